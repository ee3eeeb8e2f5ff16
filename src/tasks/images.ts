// Images in the blob store, as the task service sees them: an upload streamed into the
// store after its head passed the image check, and blobs removed once no row points at them.
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { blobStore, imageContentType, imageKey } from '../blobs.ts';
import { inspectImage, sniffFormat, UnreadableHeader, UnsupportedImage, type ImageInfo } from '../jobs/image-resize.ts';
import { log } from '../log.ts';
import { BlobTooLarge } from '../storage/index.ts';
import { InvalidImage, InvalidInput } from './errors.ts';
import type { StoredImage } from './store.ts';

/** What an upload arrives as: a file part streaming in (src/http/multipart.ts), a File, anything with a stream. */
export interface Upload {
  size?: number;
  stream(): ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;
}

/**
 * How much of an upload is read before the check: enough for the header of every format we
 * accept in practice. An image whose header lies further in (a TIFF with its directory at
 * the end) is checked on the stored blob instead, before its row is written.
 */
const HEAD_BYTES = 256 * 1024;

/**
 * Streams an upload into the store under a new key, refusing it (InvalidImage) when it is
 * empty, over `maxBytes`, not a supported raster image or over `maxInputPixels`, or when
 * `accept` throws on its format and size. The check runs on the head of the stream before
 * the put starts; a refused image leaves no blob.
 * Resolves once the blob is durable; the caller writes the row and, if that fails, calls
 * removeBlobs. StorageUnavailable and the client's own stream errors pass through, once
 * whatever was written of the blob is gone.
 */
export async function storeUpload(
  upload: Upload,
  limits: { maxBytes: number; maxInputPixels: number; accept?: (info: ImageInfo) => void },
): Promise<StoredImage> {
  try {
    return await streamUpload(upload, limits);
  } catch (error) {
    if (!(error instanceof InvalidImage || error instanceof InvalidInput)) log.info({ err: (error as Error)?.message }, 'upload not stored');
    throw error;
  }
}

async function streamUpload(
  upload: Upload,
  limits: { maxBytes: number; maxInputPixels: number; accept?: (info: ImageInfo) => void },
): Promise<StoredImage> {
  if (upload.size === 0) throw new InvalidImage('the uploaded file is empty');
  if (upload.size !== undefined && upload.size > limits.maxBytes) throw tooLarge(upload.size, limits.maxBytes);
  // Node streams and web streams (native, or @whatwg-node's ponyfill) are async iterables.
  const chunks = (upload.stream() as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headBytes = 0;
  let ended = false;
  try {
    while (headBytes < HEAD_BYTES) {
      const next = await chunks.next();
      if (next.done) {
        ended = true;
        break;
      }
      const value = next.value as Uint8Array;
      const chunk = Buffer.from(value.buffer, value.byteOffset, value.byteLength); // a view, not a copy
      head.push(chunk);
      headBytes += chunk.length;
      if (headBytes > limits.maxBytes) throw tooLarge(headBytes, limits.maxBytes);
    }
  } catch (error) {
    await chunks.return?.();
    throw error;
  }
  if (headBytes === 0) throw new InvalidImage('the uploaded file is empty');
  const headBuffer = head.length === 1 ? head[0] : Buffer.concat(head);
  let info: ImageInfo | null = null;
  try {
    info = await inspectImage(headBuffer, limits.maxInputPixels);
    limits.accept?.(info);
  } catch (error) {
    // Refused for good, unless only the header was unreadable and there is more of the image.
    if (ended || !(error instanceof UnreadableHeader)) {
      await chunks.return?.();
      throw refusal(error);
    }
  }
  const id = randomUUID();
  const key = imageKey(id);
  const format = info?.format ?? sniffFormat(headBuffer)!;
  const body = Readable.from(
    (async function* () {
      yield headBuffer;
      if (ended) return;
      try {
        for (let next = await chunks.next(); !next.done; next = await chunks.next()) yield next.value;
      } finally {
        await chunks.return?.(); // a put that failed stops reading the upload
      }
    })(),
    { objectMode: false },
  );
  let put;
  try {
    put = await blobStore().put(key, body, { contentType: imageContentType(format), maxBytes: limits.maxBytes });
  } catch (error) {
    if (error instanceof BlobTooLarge) throw tooLarge(undefined, limits.maxBytes);
    throw error;
  }
  if (!info) {
    // The head was not enough: check the stored image as a whole before anything points at it.
    try {
      info = await inspectStored(key, headBuffer, limits.maxInputPixels);
      limits.accept?.(info);
    } catch (error) {
      await removeBlobs([key]);
      throw refusal(error);
    }
  }
  return { id, ...info, byteSize: put.byteSize, storageKey: key, sha256: put.sha256 };
}

/**
 * The header of a stored image read as a whole (its directory may lie past the head): from
 * its file (disk) or a temporary copy (s3), never from the whole image in memory.
 */
async function inspectStored(key: string, head: Buffer, maxInputPixels: number): Promise<ImageInfo> {
  const store = blobStore();
  const file = store.localPath(key);
  if (file !== null) return inspectImage(head, maxInputPixels, file);
  const copy = path.join(os.tmpdir(), `tasklane-check-${randomUUID()}`);
  try {
    await pipeline((await store.open(key)).stream, createWriteStream(copy));
    return await inspectImage(head, maxInputPixels, copy);
  } finally {
    await rm(copy, { force: true });
  }
}

/**
 * A blob already in the store (a two-step upload) checked as storeUpload checks an upload:
 * the image check on its head (on the whole blob when the header lies further in), then
 * `accept`. One pass over the bytes also gives its size and sha-256; nothing is copied.
 * InvalidImage when refused; BlobNotFound and StorageUnavailable pass through.
 */
export async function inspectStoredImage(
  key: string,
  limits: { maxInputPixels: number; accept?: (info: ImageInfo) => void },
): Promise<Omit<StoredImage, 'id' | 'storageKey'>> {
  const store = blobStore();
  const hash = createHash('sha256');
  const head: Buffer[] = [];
  let headBytes = 0;
  let byteSize = 0;
  for await (const chunk of (await store.open(key)).stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    byteSize += chunk.length;
    if (headBytes < HEAD_BYTES) {
      head.push(chunk);
      headBytes += chunk.length;
    }
  }
  const headBuffer = Buffer.concat(head);
  let info: ImageInfo;
  try {
    try {
      info = await inspectImage(headBuffer, limits.maxInputPixels);
    } catch (error) {
      if (!(error instanceof UnreadableHeader) || byteSize === headBytes) throw error;
      info = await inspectStored(key, headBuffer, limits.maxInputPixels);
    }
    limits.accept?.(info);
  } catch (error) {
    throw refusal(error);
  }
  return { ...info, byteSize, sha256: hash.digest('hex') };
}

/**
 * The hex sha-256 of an upload's bytes, read without storing them (for comparing a retry with
 * the request it repeats). InvalidImage when it is empty or over `maxBytes`, as storeUpload.
 */
export async function hashUpload(upload: Upload, maxBytes: number): Promise<string> {
  if (upload.size !== undefined && upload.size > maxBytes) throw tooLarge(upload.size, maxBytes);
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of upload.stream() as AsyncIterable<Uint8Array>) {
    bytes += chunk.byteLength;
    if (bytes > maxBytes) throw tooLarge(undefined, maxBytes);
    hash.update(chunk);
  }
  if (bytes === 0) throw new InvalidImage('the uploaded file is empty');
  return hash.digest('hex');
}

/** An UnsupportedImage as the client sees it; anything else as it is. */
function refusal(error: unknown): unknown {
  if (!(error instanceof UnsupportedImage)) return error;
  log.debug({ err: error.cause }, `image refused: ${error.message}`);
  return new InvalidImage(error.message);
}

function tooLarge(size: number | undefined, maxBytes: number): InvalidImage {
  return new InvalidImage(
    size === undefined
      ? `the image is over the limit of ${maxBytes} bytes (MAX_UPLOAD_BYTES)`
      : `the image is ${size} bytes, over the limit of ${maxBytes} (MAX_UPLOAD_BYTES)`,
  );
}

/**
 * Deletes blobs no row points at any more. Never throws: a blob that cannot be deleted now
 * (the store is down) is logged and left for a later sweep of unreferenced blobs.
 */
export async function removeBlobs(keys: readonly string[]): Promise<void> {
  await Promise.all(
    keys.map((key) =>
      blobStore()
        .delete(key)
        .catch((error: unknown) => log.warn({ key, err: (error as Error).message }, 'blob not deleted; left for a later sweep')),
    ),
  );
}
