// The S3 store: any S3-compatible object store (AWS S3, MinIO, Ceph RGW, R2, …), keys under
// an optional prefix of one bucket. Credentials come from the SDK's default chain (the
// standard AWS_* variables, profiles, instance roles).
//
// - Puts stream a body of unknown length through lib-storage's Upload: one PUT when it
//   fits in one part, else a multipart upload that becomes visible only when completed.
//   Memory per put is about (queueSize + 1) × partSize, whatever the blob's size.
// - Every call is bounded in time: connecting and socket inactivity by the HTTP handler,
//   the calls without a streamed body also by an AbortSignal; the SDK retries a bounded
//   number of times. Network faults, timeouts, 5xx and a bucket we may not use become
//   StorageUnavailable, and so does a read cut off mid-stream (the opened blob's stream errors).
// - Multipart uploads interrupted by a crash are not swept here: give the bucket a
//   lifecycle rule AbortIncompleteMultipartUpload (a failed put aborts its own upload).
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { BlobNotFound, BlobTooLarge, RangeNotSatisfiable, StorageUnavailable } from './errors.ts';
import { assertValidKey, assertValidPrefix, isValidKey } from './keys.ts';
import { metered, type PutBody } from './meter.ts';
import type {
  BlobStat,
  BlobStore,
  ByteRange,
  ListedBlob,
  ListOptions,
  OpenedBlob,
  PresignedRequest,
  PutOptions,
  PutResult,
} from './types.ts';

export interface S3StoreOptions {
  bucket: string;
  /** Prepended to every key; "" or ending with "/". */
  prefix: string;
  /** For S3-compatible stores; unset = AWS. */
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  /** Per-call time limit, and the socket inactivity limit while streaming. */
  timeoutMs: number;
  /** Multipart part size (≥ 5 MiB, S3's minimum). */
  partSize?: number;
  /** Parts uploaded at once by one put. */
  queueSize?: number;
  /** Tries per request, the first included (the SDK's standard retry with backoff). */
  maxAttempts?: number;
  /** Unset: the SDK's default chain (production); tests pass their server's. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** Error names that mean the store (not one blob) cannot be used with our configuration. */
const UNAVAILABLE_NAMES = new Set([
  'NoSuchBucket',
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'SlowDown',
  'ServiceUnavailable',
  'InternalError',
  'RequestTimeout',
  'TimeoutError',
  'AbortError',
]);

interface SdkError {
  name?: string;
  code?: string;
  $fault?: 'client' | 'server';
  $metadata?: { httpStatusCode?: number };
}

function isNotFound(error: unknown): boolean {
  const e = error as SdkError;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound';
}

/** Maps an SDK or network error to StorageUnavailable, or rethrows it as it is (a bug). */
function unavailable(error: unknown, what: string): never {
  const e = error as SdkError;
  const status = e?.$metadata?.httpStatusCode;
  const network = status === undefined && (e?.code !== undefined || e?.name === 'TimeoutError' || e?.name === 'AbortError');
  if (network || (status !== undefined && status >= 500) || e?.$fault === 'server' || UNAVAILABLE_NAMES.has(e?.name ?? '')) {
    throw new StorageUnavailable(`s3 store: ${what} failed (${e?.code ?? e?.name ?? status})`, { cause: error });
  }
  throw error;
}

/**
 * The body of a GET with its errors (the connection cut or stalled mid-stream) as
 * StorageUnavailable, like every other fault of the store. A consumer that stops early
 * (destroys the stream) closes the body too.
 */
function failingAsUnavailable(body: Readable, key: string): Readable {
  const stream = new PassThrough();
  body.once('error', (error: Error & SdkError) => {
    stream.destroy(
      error instanceof StorageUnavailable
        ? error
        : new StorageUnavailable(`s3 store: reading "${key}" failed (${error.code ?? error.name})`, { cause: error }),
    );
  });
  stream.once('close', () => {
    if (!body.readableEnded) body.destroy();
  });
  return body.pipe(stream);
}

export class S3Store implements BlobStore {
  readonly kind = 's3' as const;
  readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(options: S3StoreOptions) {
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.timeoutMs = options.timeoutMs;
    this.partSize = options.partSize ?? 5 * 1024 * 1024;
    this.queueSize = options.queueSize ?? 2;
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      credentials: options.credentials,
      maxAttempts: options.maxAttempts ?? 3,
      // The SDK's newer default adds CRC checksums to every upload, which presigned PUTs
      // cannot carry and several S3-compatible stores refuse; we hash (sha-256) ourselves.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // Options of the SDK's Node HTTP handler: time to connect, and socket inactivity.
      requestHandler: { connectionTimeout: options.timeoutMs, socketTimeout: options.timeoutMs },
    });
  }

  private objectKey(key: string): string {
    assertValidKey(key);
    return this.prefix + key;
  }

  /** Runs one SDK call under the per-call time limit; the limit ends with the call (not with a body it returns). */
  private async timed<T>(call: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error(`timed out after ${this.timeoutMs} ms`)), this.timeoutMs);
    try {
      return await call(controller.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  async put(key: string, body: PutBody, { contentType, maxBytes }: PutOptions): Promise<PutResult> {
    const objectKey = this.objectKey(key);
    const { source, meter } = metered(body, maxBytes);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: objectKey, Body: meter, ContentType: contentType },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
      return { byteSize: meter.bytes, sha256: meter.sha256() };
    } catch (error) {
      source.destroy();
      meter.destroy();
      // The cap and the source's own error win over whatever failed after them (e.g. the
      // abort of the multipart upload, on a store that cannot abort).
      if (meter.tooLarge) throw new BlobTooLarge(maxBytes!);
      if (meter.sourceError) throw meter.sourceError;
      unavailable(error, `writing "${key}"`);
    }
  }

  async open(key: string, { range }: { range?: ByteRange } = {}): Promise<OpenedBlob> {
    const objectKey = this.objectKey(key);
    if (range && (!(range.start >= 0) || (range.end !== undefined && range.end < range.start))) {
      // Malformed: the size is needed for the error, as HTTP's 416 reports it.
      const stat = await this.stat(key);
      if (!stat) throw new BlobNotFound(key);
      throw new RangeNotSatisfiable(stat.byteSize);
    }
    let output;
    try {
      output = await this.timed((abortSignal) =>
        this.client.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: objectKey,
            Range: range ? `bytes=${range.start}-${range.end ?? ''}` : undefined,
          }),
          { abortSignal },
        ),
      );
    } catch (error) {
      if (isNotFound(error)) throw new BlobNotFound(key);
      if ((error as SdkError).name === 'InvalidRange') {
        const stat = await this.stat(key);
        throw new RangeNotSatisfiable(stat?.byteSize ?? 0);
      }
      unavailable(error, `opening "${key}"`);
    }
    const stream = failingAsUnavailable(output.Body as Readable, key);
    if (!range) return { stream, byteSize: output.ContentLength ?? 0 };
    // "bytes <start>-<end>/<size>"
    const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(output.ContentRange ?? '');
    if (!match) {
      stream.destroy();
      throw new StorageUnavailable(`s3 store: a ranged read of "${key}" came back without Content-Range`);
    }
    const [start, end, byteSize] = [Number(match[1]), Number(match[2]), Number(match[3])];
    // Some S3-compatible servers answer a range of an empty object with "bytes 0-0/0".
    if (start >= byteSize) {
      stream.destroy();
      throw new RangeNotSatisfiable(byteSize);
    }
    return { stream, byteSize, range: { start, end } };
  }

  async stat(key: string): Promise<BlobStat | null> {
    const objectKey = this.objectKey(key);
    try {
      const output = await this.timed((abortSignal) =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }), { abortSignal }),
      );
      return {
        byteSize: output.ContentLength ?? 0,
        lastModified: output.LastModified ?? new Date(0),
        contentType: output.ContentType ?? null,
      };
    } catch (error) {
      if (isNotFound(error) || (error as SdkError).$metadata?.httpStatusCode === 404) return null;
      unavailable(error, `stat of "${key}"`);
    }
  }

  async delete(key: string): Promise<void> {
    const objectKey = this.objectKey(key);
    try {
      // S3 answers 204 for a missing key too: idempotent by nature.
      await this.timed((abortSignal) =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey }), { abortSignal }),
      );
    } catch (error) {
      if (isNotFound(error)) return;
      unavailable(error, `deleting "${key}"`);
    }
  }

  async *list({ prefix = '', olderThan }: ListOptions = {}): AsyncIterable<ListedBlob> {
    assertValidPrefix(prefix);
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.timed((abortSignal) =>
          this.client.send(
            new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }),
            { abortSignal },
          ),
        );
      } catch (error) {
        unavailable(error, `listing "${prefix}"`);
      }
      for (const object of page.Contents ?? []) {
        const key = object.Key!.slice(this.prefix.length);
        if (!isValidKey(key)) continue; // the .check probe, and anything that is not ours
        const lastModified = object.LastModified ?? new Date(0);
        if (olderThan && lastModified >= olderThan) continue;
        yield { key, byteSize: object.Size ?? 0, lastModified };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  localPath(key: string): null {
    assertValidKey(key);
    return null;
  }

  async presignGet(
    key: string,
    { expiresIn, contentType, contentDisposition }: { expiresIn: number; contentType?: string; contentDisposition?: string },
  ): Promise<PresignedRequest> {
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: this.objectKey(key),
      ResponseContentType: contentType,
      ResponseContentDisposition: contentDisposition,
    });
    const expiresAt = new Date(Date.now() + expiresIn * 1000);
    const url = await getSignedUrl(this.client, command, { expiresIn });
    return { method: 'GET', url, headers: {}, expiresAt };
  }

  async presignPut(
    key: string,
    { contentType, byteSize, expiresIn }: { contentType: string; byteSize: number; expiresIn: number },
  ): Promise<PresignedRequest> {
    const command = new PutObjectCommand({
      Bucket: this.bucket,
      Key: this.objectKey(key),
      ContentType: contentType,
      ContentLength: byteSize,
    });
    const expiresAt = new Date(Date.now() + expiresIn * 1000);
    // Content-Type and Content-Length are signed: S3 refuses a PUT of another type or size.
    // (The presigner leaves Content-Type unsigned unless asked.)
    const url = await getSignedUrl(this.client, command, {
      expiresIn,
      signableHeaders: new Set(['content-type', 'content-length']),
    });
    // Content-Length is not listed: clients derive it from the body (browsers must).
    return { method: 'PUT', url, headers: { 'content-type': contentType }, expiresAt };
  }

  async sweepIncomplete(): Promise<number> {
    return 0; // see the header: the bucket's lifecycle rule does this
  }

  /** Writes a tiny probe object (one fixed key: checks never pile up). */
  async check(): Promise<void> {
    try {
      await this.timed((abortSignal) =>
        this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: `${this.prefix}.check`,
            Body: randomBytes(8).toString('hex'),
            ContentType: 'text/plain',
          }),
          { abortSignal },
        ),
      );
    } catch (error) {
      unavailable(error, 'the write check');
    }
  }
}
