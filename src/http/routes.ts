// Plain HTTP endpoints beside /graphql, as fetch handlers (Request → Response) so that
// tests can call them through yoga.fetch as well as over the network.
import { Readable } from 'node:stream';
import { blobStore, imageContentType } from '../blobs.ts';
import { config } from '../config.ts';
import { isDatabaseUnavailable, prisma } from '../db.ts';
import { checkImageSignature } from '../image-urls.ts';
import { authenticate, bearerKey } from '../tasks/keys.ts';
import { queueCounts } from '../tasks/queue.ts';
import { log } from '../log.ts';
import { BlobNotFound, RangeNotSatisfiable, StorageUnavailable } from '../storage/index.ts';
import { getImageBlob } from '../tasks/service.ts';
import { receiveUpload, UploadRefused, type UploadRefusal } from '../tasks/uploads.ts';
import { withTimeout } from '../timeout.ts';
import { isUuid } from '../uuid.ts';

const text = (status: number, body: string, headers: Record<string, string> = {}) =>
  new Response(body, { status, headers: { 'content-type': 'text/plain; charset=utf-8', ...headers } });

export function health(): Response {
  return text(200, 'ok\n');
}

/**
 * Set while the process starts (waiting for PostgreSQL, applying migrations): /ready says
 * 503 with this reason, and every route but /health and /ready answers 503 (server.ts).
 */
export const startup: { pending: string | null } = { pending: null };

/**
 * 200 when this process can do its work: start-up is over, PostgreSQL answers, it can put
 * jobs on the queue (a command through the very queue client that enqueues, which is
 * replaced when it could not connect; a Redis that answers PING is not enough), and the
 * blob store accepts a write. Else 503 naming the culprit.
 */
export async function ready(): Promise<Response> {
  const [database, queue, storage] = await Promise.allSettled([
    withTimeout(prisma.$queryRaw`SELECT 1`, 1000, 'no answer from PostgreSQL'),
    queueCounts(1000),
    withTimeout(blobStore().check(), 2000, 'no answer from the blob store'),
  ]);
  const report = {
    postgres: database.status === 'fulfilled' ? 'ok' : String(database.reason?.message ?? database.reason),
    redis: queue.status === 'fulfilled' ? 'ok' : String(queue.reason?.message ?? queue.reason),
    storage: storage.status === 'fulfilled' ? 'ok' : String(storage.reason?.message ?? storage.reason),
  };
  const ok = report.postgres === 'ok' && report.redis === 'ok' && report.storage === 'ok' && !startup.pending;
  return new Response(JSON.stringify({ ready: ok, ...report, ...(startup.pending ? { starting: startup.pending } : {}) }), {
    status: ok ? 200 : 503,
    headers: { 'content-type': 'application/json' },
  });
}

/**
 * GET/HEAD /images/<id>: with a valid signature (exp, sig) for anyone, which is what makes
 * <img src> work; without a signature for the owner's API key only. A tampered or expired
 * signature is 403; a deleted, missing or foreign image is 404; an image whose bytes
 * retention removed (RESULT_TTL_MS after its task ended) is 410, until its task goes too.
 *
 * The bytes stream from the blob store (or, with IMAGE_DOWNLOADS=redirect on an s3 store,
 * the client is sent to a presigned store URL). An image's bytes never change (a new image
 * is a new id), so the sha-256 is a strong ETag and the response may be cached as long as
 * the URL that fetched it is valid: privately (it is one tenant's image).
 */
export async function image(request: Request, url: URL): Promise<Response> {
  if (request.method !== 'GET' && request.method !== 'HEAD') return text(405, 'method not allowed\n', { allow: 'GET, HEAD' });
  const id = url.pathname.slice('/images/'.length);
  if (!isUuid(id)) return text(404, 'no such image\n');
  let owner: string | null = null;
  // How long a response may be cached: the signed URL's remaining lifetime; with a key, 0.
  let maxAge = 0;
  if (url.searchParams.has('sig') || url.searchParams.has('exp')) {
    const check = checkImageSignature(id, url.searchParams);
    if (check !== 'valid') return text(403, `${check} signature\n`);
    maxAge = Math.max(0, Number(url.searchParams.get('exp')) - Math.ceil(Date.now() / 1000));
  } else {
    const caller = await authenticate(bearerKey(request.headers.get('authorization')));
    if (!caller) return text(401, 'a signed URL or the owner\'s API key is required\n', { 'www-authenticate': 'Bearer' });
    owner = caller.owner;
  }
  const row = await getImageBlob(id);
  if (!row || (owner !== null && row.ownerId !== owner)) return text(404, 'no such image\n');
  if (row.expiredAt) return gone();
  const contentType = imageContentType(row.format);
  const etag = `"${row.sha256}"`;
  const headers: Record<string, string> = {
    etag,
    'accept-ranges': 'bytes',
    'cache-control': maxAge > 0 ? `private, max-age=${maxAge}, immutable` : 'private, no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'none'",
  };
  if (etagMatches(request.headers.get('if-none-match'), row.sha256)) return new Response(null, { status: 304, headers });

  const store = blobStore();
  try {
    if (config.imageDownloads === 'redirect' && store.kind === 's3') {
      const presigned = await store.presignGet(row.storageKey, {
        expiresIn: Math.max(60, maxAge || config.imageUrlTtlSeconds),
        contentType,
      });
      if (presigned) {
        return new Response(null, { status: 302, headers: { ...headers, location: presigned.url, 'cache-control': 'private, no-store' } });
      }
    }
    let range = parseRange(request.headers.get('range'), row.byteSize);
    const ifRange = request.headers.get('if-range');
    if (range && ifRange !== null && ifRange !== etag) range = null; // changed since: the whole image
    if (range === 'unsatisfiable') {
      return text(416, 'range not satisfiable\n', { ...headers, 'content-range': `bytes */${row.byteSize}` });
    }
    if (request.method === 'HEAD') {
      return new Response(null, { status: 200, headers: { ...headers, 'content-type': contentType, 'content-length': String(row.byteSize) } });
    }
    const blob = await store.open(row.storageKey, range ? { range } : {});
    const body = Readable.toWeb(blob.stream) as ReadableStream<Uint8Array>;
    if (blob.range) {
      const { start, end } = blob.range;
      return new Response(body, {
        status: 206,
        headers: { ...headers, 'content-type': contentType, 'content-length': String(end - start + 1), 'content-range': `bytes ${start}-${end}/${blob.byteSize}` },
      });
    }
    return new Response(body, { status: 200, headers: { ...headers, 'content-type': contentType, 'content-length': String(blob.byteSize) } });
  } catch (error) {
    if (error instanceof BlobNotFound) {
      // Removed meanwhile: by retention (410), or with its task (404).
      return (await getImageBlob(id))?.expiredAt ? gone() : text(404, 'no such image\n');
    }
    if (error instanceof RangeNotSatisfiable) return text(416, 'range not satisfiable\n', { ...headers, 'content-range': `bytes */${error.byteSize}` });
    if (error instanceof StorageUnavailable) {
      log.warn({ err: error.message }, 'blob store unavailable');
      return text(503, 'the image store is unavailable; try again shortly\n', { 'retry-after': '5' });
    }
    throw error;
  }
}

const gone = () => text(410, 'this image was removed: its task ended longer ago than the retention time (RESULT_TTL_MS)\n');

/** If-None-Match against our (strong) ETag; the comparison is weak, as RFC 9110 says for it. */
function etagMatches(header: string | null, sha256: string): boolean {
  if (header === null) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === `"${sha256}"`);
}

/**
 * A single byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) of a blob of `size` bytes; null
 * when there is no Range header or it asks for several ranges (then the whole image is
 * served, as RFC 9110 allows); 'unsatisfiable' when it is malformed or outside the image.
 */
export function parseRange(header: string | null, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  if (header === null) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return header.includes(',') && header.trim().startsWith('bytes=') ? null : 'unsatisfiable';
  const [, first, last] = match;
  if (first === '' && last === '') return 'unsatisfiable';
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

const UPLOAD_STATUS: Record<UploadRefusal, number> = {
  SizeMismatch: 400,
  InvalidSignature: 403,
  UploadDoesNotExist: 404,
  UploadConflict: 409,
  UploadExpired: 410,
  PayloadTooLarge: 413,
  UnsupportedMediaType: 415,
};

/**
 * PUT /uploads/<id>?exp=&sig=: the upload URL createUpload gives with the disk store
 * (src/tasks/uploads.ts). The signature is the credential (no API key, as with a presigned
 * s3 URL), and the declared byteSize the body limit. 204 when the bytes are stored; else
 * `{"error": <name>, "message"}` with the status of UPLOAD_STATUS, or 503.
 */
export async function upload(request: Request, url: URL): Promise<Response> {
  if (request.method !== 'PUT') return json(405, { error: 'MethodNotAllowed', message: 'PUT the bytes here' }, { allow: 'PUT' });
  try {
    await receiveUpload(url.pathname.slice('/uploads/'.length), url.searchParams, {
      contentType: request.headers.get('content-type'),
      contentLength: request.headers.get('content-length'),
      body: request.body as AsyncIterable<Uint8Array> | null,
    });
    return new Response(null, { status: 204 });
  } catch (error) {
    if (error instanceof UploadRefused) return json(UPLOAD_STATUS[error.reason], { error: error.reason, message: error.message });
    if (error instanceof StorageUnavailable) {
      log.warn({ err: error.message }, 'blob store unavailable');
      return json(503, { error: 'StorageUnavailable', message: 'the image store is unavailable; try again shortly' }, { 'retry-after': '5' });
    }
    if (isDatabaseUnavailable(error)) {
      log.warn({ err: (error as Error).message }, 'database unavailable');
      return json(503, { error: 'ServiceUnavailable', message: 'the database is unavailable; try again shortly' }, { 'retry-after': '5' });
    }
    if (request.signal.aborted) return json(400, { error: 'Aborted', message: 'the request was aborted' }); // nobody reads it
    log.error({ err: error }, 'unexpected error in an upload');
    return json(500, { error: 'InternalError', message: 'Unexpected error.' });
  }
}
