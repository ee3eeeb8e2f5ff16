// Two-step uploads, for clients without multipart (Apollo's HttpLink, plain fetch, any
// language; DESIGN.md §4): createUpload records an upload and says where to PUT its bytes;
// the client PUTs them; createTask({uploadId}) checks the blob and points the task's source
// image at it, without copying a byte.
// - The bytes go to the blob uploads/<id>. With the disk store the API takes the PUT itself
//   (receiveUpload: /uploads/<id>?exp=&sig=, signed, expiring, capped at the declared size);
//   with s3 the client PUTs to a presigned store URL bound to the declared type and length,
//   so the bytes never cross the API.
// - An upload owns its blob until a task's image takes it over: marking it USED commits in
//   the task's own transaction, so of concurrent createTask calls with one uploadId exactly
//   one creates a task. Past expiresAt, sweepExpiredUploads (run by the reconciler) removes
//   the row, and its blob unless USED.
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { blobStore, imageContentType } from '../blobs.ts';
import { config } from '../config.ts';
import { pool } from '../db.ts';
import type { UploadState } from '../generated/prisma/enums.ts';
import { checkImageSignature, sign } from '../image-urls.ts';
import { IMAGE_FORMATS, type ImageInfo } from '../jobs/image-resize.ts';
import { log } from '../log.ts';
import { BlobNotFound, BlobTooLarge } from '../storage/index.ts';
import { query, sql, type Queryable } from '../sql.ts';
import { isUuid } from '../uuid.ts';
import { InvalidImage, InvalidInput, TooManyTasks } from './errors.ts';
import { inspectStoredImage, removeBlobs } from './images.ts';
import type { Caller } from './keys.ts';
import * as store from './store.ts';
import type { StoredImage, TaskRow } from './store.ts';

/** The content types an upload may declare: the raster formats Tasklane reads. */
export const UPLOAD_CONTENT_TYPES = IMAGE_FORMATS.map(imageContentType);

export const uploadKey = (id: string) => `uploads/${id}`;

/** What upload URLs sign: never the same text as an image URL's (`<id>`) or a stream ticket's. */
const signedText = (id: string) => `upload.${id}`;

export interface PendingUpload {
  id: string;
  /** An absolute path on this API (disk store) or a full URL of the store (s3). */
  url: string;
  method: 'PUT';
  /** To be sent with the PUT as they are (the content type is part of an s3 signature). */
  headers: { name: string; value: string }[];
  /** The exact number of bytes to PUT (the declared byteSize). */
  maxBytes: number;
  expiresAt: Date;
}

interface UploadRow {
  id: string;
  ownerId: string;
  contentType: string;
  byteSize: number;
  storageKey: string;
  state: UploadState;
  expired: boolean;
}

async function findUpload(id: string, on: Queryable = pool): Promise<UploadRow | null> {
  if (!isUuid(id)) return null;
  const rows = await query<UploadRow>(on, sql`
    SELECT "id", "ownerId", "contentType", "byteSize", "storageKey", "state", "expiresAt" <= now() AS "expired"
    FROM "Upload" WHERE "id" = ${id}::uuid`);
  return rows[0] ?? null;
}

/** Why `upload` cannot become a task's image now (InvalidInput on uploadId), or null. Another key's upload does not exist. */
function unusable(upload: UploadRow | null, id: string, owner: string): InvalidInput | null {
  const refuse = (why: string) => new InvalidInput(`upload ${id.slice(0, 64)} ${why}`, 'uploadId');
  if (!upload || upload.ownerId !== owner) return refuse('does not exist');
  if (upload.state === 'USED') return refuse('was already used by a task');
  if (upload.expired) return refuse('has expired; create a new one');
  if (upload.state === 'RECEIVING') return refuse('is still receiving its bytes (its PUT has not finished)');
  return null;
}

export async function createUpload(caller: Caller, input: { contentType: string; byteSize: number }): Promise<PendingUpload> {
  const contentType = input.contentType.trim().toLowerCase();
  if (!UPLOAD_CONTENT_TYPES.includes(contentType)) {
    const given = JSON.stringify(input.contentType.slice(0, 64));
    throw new InvalidInput(`contentType must be one of ${UPLOAD_CONTENT_TYPES.join(', ')}, got ${given}`, 'contentType');
  }
  const { byteSize } = input;
  if (!Number.isInteger(byteSize) || byteSize < 1 || byteSize > config.maxUploadBytes) {
    throw new InvalidInput(`byteSize must be from 1 to ${config.maxUploadBytes} (MAX_UPLOAD_BYTES), got ${byteSize}`, 'byteSize');
  }
  const id = randomUUID();
  const key = uploadKey(id);
  const limit = config.maxPendingUploadsPerKey;
  const expiresAt = await store.inTransaction(async (client) => {
    // The owner's lock, THEN the count: exact under concurrency, like the task quota.
    await query(client, sql`SELECT pg_advisory_xact_lock(hashtextextended('uploads:' || ${caller.owner}::text, 0))`);
    const [{ pending }] = await query<{ pending: number }>(client, sql`
      SELECT count(*)::int AS "pending" FROM "Upload"
      WHERE "ownerId" = ${caller.owner}::text AND "state" <> 'USED' AND "expiresAt" > now()`);
    if (pending >= limit) {
      throw new TooManyTasks(
        limit,
        `this key already has ${limit} pending uploads (not yet used by createTask, not expired), the most it may hold (MAX_PENDING_UPLOADS_PER_KEY)`,
      );
    }
    const [row] = await query<{ expiresAt: Date }>(client, sql`
      INSERT INTO "Upload" ("id", "ownerId", "contentType", "byteSize", "storageKey", "expiresAt")
      VALUES (${id}::uuid, ${caller.owner}::text, ${contentType}::text, ${byteSize}::int, ${key}::text,
              now() + make_interval(secs => ${config.uploadTtlMs / 1000}::float8))
      RETURNING "expiresAt"`);
    return row.expiresAt;
  });
  // Neither URL outlives the row: the s3 one is cut to whole seconds left, ours to the second.
  const presigned = await blobStore().presignPut(key, {
    contentType,
    byteSize,
    expiresIn: Math.max(1, Math.floor((expiresAt.getTime() - Date.now()) / 1000)),
  });
  const exp = Math.floor(expiresAt.getTime() / 1000);
  const headers = presigned ? Object.entries(presigned.headers) : [['content-type', contentType]];
  log.info({ uploadId: id, owner: caller.owner, byteSize, contentType }, 'upload created');
  return {
    id,
    url: presigned?.url ?? `/uploads/${id}?exp=${exp}&sig=${sign(signedText(id), exp)}`,
    method: 'PUT',
    headers: headers.map(([name, value]) => ({ name, value })),
    maxBytes: byteSize,
    expiresAt,
  };
}

/** Why a PUT to /uploads/<id> was refused; src/http/routes.ts gives each its status. */
export type UploadRefusal =
  | 'InvalidSignature'
  | 'UploadDoesNotExist'
  | 'UploadExpired'
  | 'UploadConflict'
  | 'UnsupportedMediaType'
  | 'PayloadTooLarge'
  | 'SizeMismatch';

export class UploadRefused extends Error {
  override name = 'UploadRefused';
  constructor(
    readonly reason: UploadRefusal,
    message: string,
  ) {
    super(message);
  }
}

/**
 * PUT /uploads/<id>?exp=&sig= (the disk store's upload URL): streams the body into the
 * upload's blob, never more than the declared byteSize, and exactly that many or nothing is
 * kept. One PUT at a time and only before the bytes are there (RECEIVING, then UPLOADED), so
 * createTask never reads a blob that is being replaced. A refused or failed PUT leaves no blob
 * and the upload PENDING, to be PUT again until it expires.
 */
export async function receiveUpload(
  id: string,
  params: URLSearchParams,
  request: { contentType: string | null; contentLength: string | null; body: AsyncIterable<Uint8Array> | null },
): Promise<{ byteSize: number }> {
  if (!isUuid(id)) throw new UploadRefused('UploadDoesNotExist', 'no such upload');
  const check = checkImageSignature(signedText(id.toLowerCase()), params);
  if (check === 'invalid') throw new UploadRefused('InvalidSignature', 'the upload URL is not valid (exp and sig as createUpload gave them)');
  if (check === 'expired') throw new UploadRefused('UploadExpired', 'the upload URL has expired; create a new upload');
  const [upload] = await query<UploadRow>(pool, sql`
    UPDATE "Upload" SET "state" = 'RECEIVING'
    WHERE "id" = ${id}::uuid AND "state" = 'PENDING' AND "expiresAt" > now()
    RETURNING "id", "ownerId", "contentType", "byteSize", "storageKey", "state", false AS "expired"`);
  if (!upload) {
    const current = await findUpload(id);
    if (!current) throw new UploadRefused('UploadDoesNotExist', 'no such upload (expired uploads are removed)');
    if (current.expired) throw new UploadRefused('UploadExpired', 'the upload has expired; create a new upload');
    throw new UploadRefused(
      'UploadConflict',
      current.state === 'RECEIVING' ? 'another PUT of this upload is in progress' : 'this upload already has its bytes',
    );
  }
  const { storageKey: key, byteSize } = upload;
  try {
    const contentType = request.contentType?.split(';')[0].trim().toLowerCase() ?? null;
    if (contentType !== upload.contentType) {
      throw new UploadRefused('UnsupportedMediaType', `send Content-Type: ${upload.contentType}, as declared to createUpload`);
    }
    if (request.contentLength !== null && Number(request.contentLength) !== byteSize) {
      throw new UploadRefused(
        Number(request.contentLength) > byteSize ? 'PayloadTooLarge' : 'SizeMismatch',
        `the body is ${request.contentLength} bytes; this upload takes exactly ${byteSize}`,
      );
    }
    let put;
    try {
      const body = Readable.from(request.body ?? [], { objectMode: false });
      put = await blobStore().put(key, body, { contentType: upload.contentType, maxBytes: byteSize });
    } catch (error) {
      if (error instanceof BlobTooLarge) throw new UploadRefused('PayloadTooLarge', `the body is over the ${byteSize} bytes declared`);
      throw error;
    }
    if (put.byteSize !== byteSize) {
      await removeBlobs([key]);
      throw new UploadRefused('SizeMismatch', `the body was ${put.byteSize} bytes; this upload takes exactly ${byteSize}`);
    }
    const done = await query(pool, sql`UPDATE "Upload" SET "state" = 'UPLOADED' WHERE "id" = ${id}::uuid AND "state" = 'RECEIVING' RETURNING "id"`);
    if (!done.length) {
      // Expired and swept while the bytes came in: nothing may keep the blob.
      await removeBlobs([key]);
      throw new UploadRefused('UploadExpired', 'the upload expired while its bytes came in; create a new upload');
    }
    return { byteSize };
  } catch (error) {
    // Back to PENDING, to be PUT again. (If PostgreSQL is unreachable now, it stays RECEIVING until it expires.)
    await query(pool, sql`UPDATE "Upload" SET "state" = 'PENDING' WHERE "id" = ${id}::uuid AND "state" = 'RECEIVING'`).catch(() => {});
    throw error;
  }
}

/**
 * The source image createTask makes of upload `uploadId`: the caller's own, unexpired, unused
 * upload whose blob holds exactly the declared bytes, an image of the declared type that
 * passes the checks of a multipart upload (`accept` included). Its row points at the
 * upload's blob (nothing is copied); insertTaskFromUpload then takes the upload over.
 * InvalidInput (field uploadId) or InvalidImage when not.
 */
export async function uploadedImage(
  caller: Caller,
  uploadId: string,
  limits: { maxInputPixels: number; accept?: (info: ImageInfo) => void },
): Promise<StoredImage> {
  const upload = await findUpload(uploadId);
  const refusal = unusable(upload, uploadId, caller.owner);
  if (refusal) throw refusal;
  const { storageKey, byteSize, contentType } = upload!;
  const neverPut = new InvalidInput(`upload ${uploadId} has no bytes yet: PUT them to its url first`, 'uploadId');
  const stat = await blobStore().stat(storageKey);
  if (!stat) throw neverPut;
  if (stat.byteSize !== byteSize) {
    throw new InvalidInput(`upload ${uploadId} holds ${stat.byteSize} bytes, not the ${byteSize} declared`, 'uploadId');
  }
  let image;
  try {
    image = await inspectStoredImage(storageKey, limits);
  } catch (error) {
    throw error instanceof BlobNotFound ? neverPut : error;
  }
  if (imageContentType(image.format) !== contentType) {
    throw new InvalidImage(`the uploaded bytes are a ${image.format} image, not ${contentType} as declared`);
  }
  return { id: randomUUID(), storageKey, ...image };
}

/**
 * Inserts the task (store.insertTask) and marks upload `uploadId` USED in one transaction.
 * The row lock orders concurrent calls: the second waits for the first to commit, then finds
 * the upload USED (InvalidInput). A full quota (null) or any failure leaves the upload as it was.
 */
export function insertTaskFromUpload(uploadId: string, task: store.NewTask): Promise<TaskRow | null> {
  return store.insertTask(task, async (client) => {
    const claimed = await query(client, sql`
      UPDATE "Upload" SET "state" = 'USED', "usedAt" = now()
      WHERE "id" = ${uploadId}::uuid AND "ownerId" = ${task.ownerId}::text
        AND "state" IN ('PENDING', 'UPLOADED') AND "expiresAt" > now()
      RETURNING "id"`);
    if (!claimed.length) {
      throw unusable(await findUpload(uploadId, client), uploadId, task.ownerId) ?? new InvalidInput(`upload ${uploadId} cannot be used now`, 'uploadId');
    }
  });
}

let sweeping: Promise<number> | null = null;

/**
 * Starts sweepExpiredUploads unless one is still running, without waiting for it: the
 * reconciler calls this on every sweep, and a slow or unreachable store must not delay its
 * recovery of tasks.
 */
export function sweepExpiredUploadsInBackground(): void {
  sweeping ??= sweepExpiredUploads().finally(() => (sweeping = null));
}

/**
 * Removes up to `limit` expired uploads: their blobs (unless a task took one over), then
 * their rows, in one transaction holding the rows, so a PUT finishing meanwhile finds its
 * row gone and removes its own blob. With the store unavailable nothing is removed (the next
 * sweep tries again); never throws, so the reconciler's other work goes on. Returns how many went.
 */
export async function sweepExpiredUploads(limit = 100): Promise<number> {
  try {
    return await store.inTransaction(async (client) => {
      const rows = await query<{ id: string; storageKey: string; state: UploadState }>(client, sql`
        SELECT "id", "storageKey", "state" FROM "Upload" WHERE "expiresAt" < now()
        ORDER BY "expiresAt" LIMIT ${limit}::int FOR UPDATE SKIP LOCKED`);
      if (!rows.length) return 0;
      const store = blobStore();
      await Promise.all(rows.filter((row) => row.state !== 'USED').map((row) => store.delete(row.storageKey)));
      await query(client, sql`DELETE FROM "Upload" WHERE "id" = ANY(${rows.map((row) => row.id)}::uuid[])`);
      log.info({ count: rows.length }, 'removed expired uploads');
      return rows.length;
    });
  } catch (error) {
    log.warn({ err: (error as Error).message }, 'expired uploads not removed; the next sweep tries again');
    return 0;
  }
}
