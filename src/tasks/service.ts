// The task service: what GraphQL resolvers, the REST facade and the CLI call. Validates at
// the edge, writes through store.ts transitions (which publish every change), enqueues work.
import { CallbackUrlRefused, checkCallbackUrl } from '../callbacks/address-policy.ts';
import { attemptsOf } from '../callbacks/store.ts';
import { config } from '../config.ts';
import { isDatabaseUnavailable, prisma } from '../db.ts';
import type { JobDefinition, TaskStatus } from '../generated/prisma/enums.ts';
import {
  checkOutputSize,
  InvalidResizeParams,
  validateResizeInput,
  type ImageInfo,
  type ResizeInput,
  type ResizeParams,
} from '../jobs/image-resize.ts';
import { log } from '../log.ts';
import { IdempotencyKeyReused, InvalidInput, InvalidTaskState, TaskDoesNotExist, TooManyTasks, WrongTaskIdFormat } from './errors.ts';
import { afterEarlierDuplicates, checkIdempotencyKey, findIdempotencyKey, imageOfBytes, requestFingerprint, type IdempotencyRecord } from './idempotency.ts';
import { hashUpload, removeBlobs, storeUpload, type Upload } from './images.ts';
import type { Caller } from './keys.ts';
import { enqueue } from './queue.ts';
import * as store from './store.ts';
import { asTaskRows, IdempotencyKeyTaken, type StoredImage, type TaskRow } from './store.ts';
import { insertTaskFromUpload, uploadedImage } from './uploads.ts';
import { isUuid } from '../uuid.ts';

export type { TaskRow };

export function checkTaskId(id: string): string {
  if (!isUuid(id)) throw new WrongTaskIdFormat(id);
  return id.toLowerCase();
}

export interface CreateTaskInput {
  jobDefinition: JobDefinition;
  /** The image's bytes (multipart), or … */
  image?: Upload | null;
  /** … a two-step upload whose bytes are in the store already (uploads.ts); exactly one of the two. */
  uploadId?: string | null;
  /**
   * Instead of `image`: its bytes stored already by storeImage, for a form whose fields may
   * follow its file (REST). Through createOrReplayTaskWithImage, which removes it if refused.
   */
  stored?: StoredImage | null;
  resize: ResizeInput;
  run?: boolean | null;
  /** POSTed (signed) when the task ends: DONE, FAILED or DELETED (src/callbacks/). */
  callbackUrl?: string | null;
  /** The same key of the same owner within 24 h answers with the same task (see idempotency.ts). */
  idempotencyKey?: string | null;
}

export async function createTask(caller: Caller, input: CreateTaskInput): Promise<TaskRow> {
  return (await createOrReplayTask(caller, input)).task;
}

/**
 * createTask, saying whether the task was made by this call or is the one an earlier call
 * with the same idempotency key made (`replayed`; the REST facade answers it the same way).
 */
export async function createOrReplayTask(caller: Caller, input: CreateTaskInput): Promise<{ task: TaskRow; replayed: boolean }> {
  if (input.jobDefinition !== 'IMAGE_RESIZE') throw new InvalidInput(`unknown job definition ${input.jobDefinition}`, 'jobDefinition');
  const { image, uploadId } = input;
  const bytes = image ?? input.stored;
  if (bytes != null && uploadId != null) throw new InvalidInput('give either image or uploadId, not both', 'uploadId');
  if (bytes == null && uploadId == null) throw new InvalidInput('give the image: a file (image) or a finished upload (uploadId)', 'image');
  // Parameters first (cheap, and they do not depend on the image but for the default format).
  let params: ResizeParams;
  try {
    params = validateResizeInput(input.resize, 'JPEG');
  } catch (error) {
    if (error instanceof InvalidResizeParams) throw new InvalidInput(error.message, error.field);
    throw error;
  }
  // The callback URL before the bytes are stored: a refusal costs no write.
  let callbackUrl: string | null = null;
  if (input.callbackUrl != null) {
    try {
      callbackUrl = await checkCallbackUrl(input.callbackUrl, config.webhookAllowPrivateNetworks);
    } catch (error) {
      if (error instanceof CallbackUrlRefused) throw new InvalidInput(error.message, 'callbackUrl');
      throw error;
    }
  }
  if (input.idempotencyKey == null) return insertNewTask(caller, input, params, callbackUrl, null);
  const key = checkIdempotencyKey(input.idempotencyKey);
  const request = { jobDefinition: input.jobDefinition, resize: input.resize, run: Boolean(input.run), callbackUrl };
  // The image of the fingerprint: the bytes, or the upload (which makes one task only).
  const imageOf = (sha256: string) => (uploadId != null ? `upload:${uploadId.toLowerCase()}` : imageOfBytes(sha256));
  return afterEarlierDuplicates(caller.owner, key, async () => {
    // A retry of a request that made its task already: answered without storing its bytes again.
    const earlier = await findIdempotencyKey(caller.owner, key);
    if (earlier) {
      const sha256 = image != null ? await hashUpload(image, config.maxUploadBytes) : (input.stored?.sha256 ?? '');
      return { task: await replay(caller, earlier, requestFingerprint({ ...request, image: imageOf(sha256) })), replayed: true };
    }
    const keyed = { key, fingerprint: (sha256: string) => requestFingerprint({ ...request, image: imageOf(sha256) }) };
    return insertNewTask(caller, input, params, callbackUrl, keyed);
  });
}

/**
 * Streams an upload into the blob store, checked on its head like createTask's image (then
 * createOrReplayTaskWithImage). For a form whose fields may come after its file (REST).
 */
export function storeImage(image: Upload): Promise<StoredImage> {
  return storeUpload(image, { maxBytes: config.maxUploadBytes, maxInputPixels: config.maxInputPixels });
}

/**
 * createOrReplayTask on an image storeImage stored. The image is removed when the request is
 * refused, and when it is answered with an earlier task (a replay has its own image).
 */
export async function createOrReplayTaskWithImage(
  caller: Caller,
  input: Omit<CreateTaskInput, 'image' | 'uploadId'> & { stored: StoredImage },
): Promise<{ task: TaskRow; replayed: boolean }> {
  try {
    const result = await createOrReplayTask(caller, input);
    if (result.replayed) await removeBlobs([input.stored.storageKey]);
    return result;
  } catch (error) {
    // As insertNewTask: with PostgreSQL unreachable the row may have committed, so the image
    // stays (an image no row points at is swept later).
    if (!isDatabaseUnavailable(error)) await removeBlobs([input.stored.storageKey]);
    throw error;
  }
}

/**
 * Stores the upload (or checks the two-step upload's blob) and inserts its task, with its
 * idempotency key when `keyed` (the fingerprint needs the bytes' sha-256). If a concurrent
 * request with that key made its task first, this one's blob goes (unless the two-step
 * upload still owns it) and the answer is the replay of that task.
 */
async function insertNewTask(
  caller: Caller,
  input: CreateTaskInput,
  validated: ResizeParams,
  callbackUrl: string | null,
  keyed: { key: string; fingerprint: (sha256: string) => string } | null,
): Promise<{ task: TaskRow; replayed: boolean }> {
  let params = validated;
  const limits = {
    maxBytes: config.maxUploadBytes,
    maxInputPixels: config.maxInputPixels,
    // With the source's size known, before the bytes are stored: the result's size.
    accept: (info: ImageInfo) => {
      params = { ...params, format: input.resize.format ?? info.format };
      try {
        checkOutputSize(info, params, config.maxOutputPixels);
      } catch (error) {
        if (error instanceof InvalidResizeParams) throw new InvalidInput(error.message, error.field);
        throw error;
      }
    },
  };
  const { uploadId } = input;
  // A multipart image's bytes go to the blob store first (checked on their head, durable when
  // this resolves), then the row that points at them; if the row is not written, the blob
  // goes. A two-step upload's bytes are in the store already, owned by the upload until the
  // task's commit takes them over: they never go here.
  // A keyed duplicate that finds the upload taken (by the task its key names) is its replay.
  const replayOfUsedUpload = async (error: unknown) => {
    if (!keyed || uploadId == null || !(error instanceof InvalidInput) || error.field !== 'uploadId') return null;
    const winner = await findIdempotencyKey(caller.owner, keyed.key);
    return winner && { task: await replay(caller, winner, keyed.fingerprint('')), replayed: true };
  };
  let uploaded: StoredImage | undefined;
  if (uploadId != null) {
    try {
      uploaded = await uploadedImage(caller, uploadId, limits);
    } catch (error) {
      const replayed = await replayOfUsedUpload(error);
      if (replayed) return replayed;
      throw error;
    }
  }
  const source =
    uploaded != null
      ? uploaded
      : input.stored != null
        ? (limits.accept(input.stored), input.stored)
        : await storeUpload(input.image!, limits);
  const removeOwnBlob = () => (uploadId != null ? Promise.resolve() : removeBlobs([source.storageKey]));
  const idempotency = keyed && { key: keyed.key, fingerprint: keyed.fingerprint(source.sha256) };
  const replayed = async (winner: IdempotencyRecord) => {
    await removeOwnBlob();
    log.info({ taskId: winner.taskId, owner: caller.owner }, 'idempotency key taken by a concurrent request: answered with its task, this request\'s blob deleted');
    return { task: await replay(caller, winner, idempotency!.fingerprint), replayed: true };
  };
  let task: TaskRow | null = null;
  for (let attempt = 1; ; attempt++) {
    try {
      const newTask: store.NewTask = {
        ownerId: caller.owner,
        jobDefinition: input.jobDefinition,
        params,
        source,
        run: Boolean(input.run),
        limit: config.maxActiveTasksPerKey,
        callbackUrl,
        idempotency,
      };
      task = uploadId != null ? await insertTaskFromUpload(uploadId, newTask) : await store.insertTask(newTask);
      break;
    } catch (error) {
      if (error instanceof IdempotencyKeyTaken) {
        // A concurrent duplicate committed its task first; nothing of this one was written.
        // Its key can be gone already only if it expired or its task row was deleted
        // meanwhile, and then the key is free: try again.
        const winner = await findIdempotencyKey(caller.owner, idempotency!.key);
        if (winner) return replayed(winner);
        if (attempt < 3) continue;
      }
      const replayedUpload = await replayOfUsedUpload(error);
      if (replayedUpload) return replayedUpload;
      // Refused by PostgreSQL, the row is not there: its blob goes. A lost connection leaves
      // it unknown whether the row committed; the blob stays then (an unreferenced blob is
      // swept later, a row without its blob would be a broken image).
      if (!isDatabaseUnavailable(error)) await removeOwnBlob();
      throw error;
    }
  }
  if (!task) {
    // The quota may have filled up with this very request's task, made by a concurrent duplicate.
    const winner = idempotency && (await findIdempotencyKey(caller.owner, idempotency.key));
    if (winner) return replayed(winner);
    await removeOwnBlob();
    throw new TooManyTasks(config.maxActiveTasksPerKey);
  }
  log.info({ taskId: task.id, owner: caller.owner, status: task.status }, 'task created');
  if (task.status === 'QUEUED') await enqueue(task.id);
  return { task, replayed: false };
}

/** The task an idempotency key made, if `fingerprint` is the request that made it; else IdempotencyKeyReused. */
async function replay(caller: Caller, earlier: IdempotencyRecord, fingerprint: string): Promise<TaskRow> {
  if (earlier.fingerprint !== fingerprint) throw new IdempotencyKeyReused(earlier.taskId);
  // The key row goes with its task (foreign key, cascade), so the task is there.
  const task = await store.findTask(earlier.taskId, caller.owner);
  if (!task) throw new Error(`idempotency key of task ${earlier.taskId} outlived its task`);
  log.debug({ taskId: task.id, owner: caller.owner }, 'createTask repeated with its idempotency key: answered with its task');
  return task;
}

/** The caller's task, or TaskDoesNotExist (a foreign task looks exactly like a missing one). */
export async function getTask(caller: Caller, id: string): Promise<TaskRow> {
  const task = await store.findTask(checkTaskId(id), caller.owner);
  if (!task) throw new TaskDoesNotExist(id);
  return task;
}

export async function runTask(caller: Caller, id: string): Promise<TaskRow> {
  const taskId = checkTaskId(id);
  const task = await store.markQueued(taskId, caller.owner);
  if (!task) {
    const current = await getTask(caller, taskId);
    throw new InvalidTaskState(current.status, 'run');
  }
  log.info({ taskId }, 'task queued');
  await enqueue(taskId);
  return task;
}

/** Soft delete: status DELETED, images removed, row and audit trail kept. Idempotent. */
export async function deleteTask(caller: Caller, id: string): Promise<TaskRow> {
  const taskId = checkTaskId(id);
  const deleted = await store.markDeleted(taskId, caller.owner);
  if (!deleted) return getTask(caller, taskId); // already DELETED (or not the caller's: throws)
  const { task, blobKeys } = deleted;
  log.info({ taskId }, 'task deleted');
  // The rows are gone (committed): now their blobs. A failure is logged, not the caller's.
  // A queued job finds the task DELETED when it is picked and does nothing; a running
  // one loses its fencing check at its next write and stops (see worker/).
  await removeBlobs(blobKeys);
  return task;
}

export const MAX_PAGE_SIZE = 100;

export interface TaskPage {
  tasks: TaskRow[];
  hasNextPage: boolean;
}

/** Newest first; `after` is the id of the last task of the previous page. */
export async function listTasks(
  caller: Caller,
  options: { first?: number | null; after?: string | null; status?: TaskStatus[] | null },
): Promise<TaskPage> {
  const first = options.first ?? 20;
  if (!Number.isInteger(first) || first < 0 || first > MAX_PAGE_SIZE) {
    throw new InvalidInput(`first must be from 0 to ${MAX_PAGE_SIZE}`, 'first');
  }
  let cursor: { createdAt: Date; id: string } | null = null;
  if (options.after) {
    const id = isUuid(options.after) ? options.after : null;
    const anchor = id ? await store.findTask(id, caller.owner) : null;
    if (!anchor) throw new InvalidInput('after is not a cursor of this list', 'after');
    cursor = { createdAt: anchor.createdAt, id: anchor.id };
  }
  // A status filter has at most 6 distinct values, however long the list it came in.
  const statuses = [...new Set(options.status ?? [])];
  const rows = await prisma.task.findMany({
    where: {
      ownerId: caller.owner,
      ...(statuses.length ? { status: { in: statuses } } : {}),
      ...(cursor
        ? { OR: [{ createdAt: { lt: cursor.createdAt } }, { createdAt: cursor.createdAt, id: { lt: cursor.id } }] }
        : {}),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: first + 1,
  });
  return { tasks: asTaskRows(rows.slice(0, first)), hasNextPage: rows.length > first };
}

export function getTaskEvents(taskId: string) {
  return prisma.taskEvent.findMany({
    where: { taskId },
    orderBy: { id: 'asc' },
    select: { at: true, status: true, message: true, version: true },
  });
}

/** Every callback attempt of the tasks, oldest first per task (Task.callbacks). */
export function getCallbackAttempts(taskIds: string[]) {
  return attemptsOf(taskIds);
}

const IMAGE_META = { id: true, ownerId: true, format: true, width: true, height: true, byteSize: true } as const;
const IMAGE_BLOB = { ...IMAGE_META, storageKey: true, sha256: true, expiredAt: true } as const;

export function getImageMeta(id: string) {
  return prisma.image.findUnique({ where: { id }, select: IMAGE_META });
}

export function getImagesMeta(ids: string[]) {
  return prisma.image.findMany({ where: { id: { in: ids } }, select: IMAGE_META });
}

/**
 * An image's metadata with its blob's key and sha-256 (for downloads); null if missing.
 * `expiredAt` set: a tombstone, the bytes were removed by retention (see retention.ts).
 */
export function getImageBlob(id: string) {
  return prisma.image.findUnique({ where: { id }, select: IMAGE_BLOB });
}
