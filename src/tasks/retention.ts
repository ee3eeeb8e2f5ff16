// Retention: what Tasklane keeps, and for how long (README, "Retention").
//
//  - RESULT_TTL_MS after a task ended (DONE, FAILED, DELETED), the bytes of its images —
//    result AND source — leave the blob store. The Image rows stay as tombstones
//    ("expiredAt" set) and the task says so ("imagesExpiredAt"): `source`/`result` are null,
//    `resultOfJob` still names the result, and /images/<id> answers 410 Gone, not 404.
//    A tombstone in the Image row itself is the simplest sound way to tell "expired" from
//    "never existed": no second table to keep in step, the owner check of /images works as
//    before, and the tombstone goes with its task.
//  - TASK_TTL_MS after a task's last change (its end; for a task deleted after it ended, the
//    delete), the task goes with its audit trail (cascade) and its image rows:
//    TaskDoesNotExist, and /images/<id> answers 404.
//  - Blobs that no row points at (a crash between writing a blob and committing its row, a
//    delete of the store that failed) are removed once older than ORPHAN_GRACE_MS.
//
// Order, always: the rows change first (commit), the blobs go after. A crash in between
// leaves a blob nobody points at, which the orphan sweep removes; never a row pointing at a
// missing blob without saying so.
//
// Every worker process runs this beside its reconciler (startRetention), on any number of
// hosts at once, without the reconciler's lock: each batch takes its rows FOR UPDATE SKIP
// LOCKED, so concurrent sweeps take disjoint batches, and deleting a blob twice is no error.
// Work per run is bounded (BATCH rows, MAX_BATCHES batches, ORPHAN_LIST_BUDGET listed blobs).
//
// Invariant relied on: only images of ended tasks expire, and an image belongs to one task.
// A task that ended never runs again, so no worker reads a source retention removed.
import { blobStore } from '../blobs.ts';
import { config } from '../config.ts';
import { pool } from '../db.ts';
import { log } from '../log.ts';
import { orphanBlobsRemoved, retentionImagesRemoved, retentionTasksRemoved } from '../metrics.ts';
import { query, sql } from '../sql.ts';
import type { ListedBlob } from '../storage/index.ts';
import { FINAL_STATUSES } from './lifecycle.ts';

/** Rows one statement takes. */
const BATCH = 100;
/** Batches of each kind one run takes at most (more wait for the next run). */
const MAX_BATCHES = 5;
/** Blob deletes in flight at once. */
const DELETE_CONCURRENCY = 8;
/**
 * How old an unreferenced blob must be before it is removed. It must exceed the longest time
 * between a blob's write and the commit of the row that points at it: an upload's check and
 * insert, a result written by an executor until complete() commits (at most JOB_TIMEOUT_MS
 * plus a lease), an image moved by src/migrate-images.ts. An hour covers those with room.
 */
export const ORPHAN_GRACE_MS = 3_600_000;
/** Blobs one orphan run lists at most (S3: one page is 1000). */
const ORPHAN_LIST_BUDGET = 1000;
/** How often one process looks for expired images and tasks, unless a run left work behind. */
const EXPIRY_EVERY_MS = 10_000;
/** How often one process lists the next ORPHAN_LIST_BUDGET blobs of the store. */
const ORPHAN_EVERY_MS = 60_000;

const finalStatuses = sql`${[...FINAL_STATUSES]}::"TaskStatus"[]`;

export interface ExpiryBatch {
  /** Tasks marked (their images removed, or they had none left). */
  tasks: number;
  /** Images whose bytes were removed. */
  images: number;
}

/**
 * One batch: the images of up to `batch` tasks that ended before `now - resultTtlMs` become
 * tombstones, in one statement; then their blobs are deleted.
 */
export async function expireImages({ now = new Date(), resultTtlMs = config.resultTtlMs, batch = BATCH } = {}): Promise<ExpiryBatch> {
  const cutoff = new Date(now.getTime() - resultTtlMs);
  // Task_imagesExpiredAt_finishedAt_idx holds exactly the candidates, oldest first; ordering by
  // both of its columns lets the scan stop after `batch` rows (the planner, which cannot know
  // that few ended tasks still have images, would otherwise scan the table). DELETED tasks are
  // marked too (their images went with the delete), so they leave the candidates for good.
  const [row] = await query<{ tasks: number; keys: string[] }>(pool, sql`
    WITH due AS (
      SELECT "id", "sourceImageId", "resultImageId" FROM "Task"
      WHERE "imagesExpiredAt" IS NULL AND "finishedAt" < ${cutoff}::timestamptz AND "status" = ANY(${finalStatuses})
      ORDER BY "imagesExpiredAt", "finishedAt"
      LIMIT ${batch}::int
      FOR UPDATE SKIP LOCKED
    ), t AS (
      UPDATE "Task" SET "imagesExpiredAt" = ${now}::timestamptz FROM due WHERE "Task"."id" = due."id"
      RETURNING "Task"."id"
    ), img AS (
      UPDATE "Image" SET "expiredAt" = ${now}::timestamptz
      WHERE "id" IN (SELECT "sourceImageId" FROM due UNION ALL SELECT "resultImageId" FROM due) AND "expiredAt" IS NULL
      RETURNING "storageKey"
    )
    SELECT (SELECT count(*) FROM t)::int AS "tasks", COALESCE((SELECT array_agg("storageKey") FROM img), '{}') AS "keys"`);
  // Committed: nothing points at these blobs any more.
  await deleteBlobs(row.keys);
  retentionImagesRemoved.inc(row.keys.length);
  return { tasks: row.tasks, images: row.keys.length };
}

/**
 * One batch: up to `batch` tasks whose last change is older than `now - taskTtlMs` are
 * removed with their events and image rows; then the blobs of images that had not expired
 * yet (none, unless the image sweep has not come by) are deleted. Returns how many tasks.
 */
export async function removeEndedTasks({ now = new Date(), taskTtlMs = config.taskTtlMs, batch = BATCH } = {}): Promise<number> {
  const cutoff = new Date(now.getTime() - taskTtlMs);
  // Task_status_updatedAt_idx holds exactly the candidates: an ended task changes no more
  // (the image sweep does not touch "updatedAt"), but for a delete.
  const [row] = await query<{ tasks: number; keys: string[] }>(pool, sql`
    WITH due AS (
      SELECT "id", "sourceImageId", "resultImageId" FROM "Task"
      WHERE "status" = ANY(${finalStatuses}) AND "updatedAt" < ${cutoff}::timestamptz
      LIMIT ${batch}::int
      FOR UPDATE SKIP LOCKED
    ), t AS (
      DELETE FROM "Task" USING due WHERE "Task"."id" = due."id"
      RETURNING "Task"."id"
    ), img AS (
      DELETE FROM "Image" WHERE "id" IN (SELECT "sourceImageId" FROM due UNION ALL SELECT "resultImageId" FROM due)
      RETURNING "storageKey", "expiredAt"
    )
    SELECT (SELECT count(*) FROM t)::int AS "tasks",
      COALESCE((SELECT array_agg("storageKey") FROM img WHERE "expiredAt" IS NULL), '{}') AS "keys"`);
  await deleteBlobs(row.keys);
  retentionImagesRemoved.inc(row.keys.length);
  retentionTasksRemoved.inc(row.tasks);
  return row.tasks;
}

/**
 * Everything in PostgreSQL that points at a blob. A blob none of these names is an orphan
 * once older than the grace period. EVERY table that holds a blob's key belongs here (a
 * pending upload's too): a blob only another table knows would be removed after the grace.
 * Each source answers which of `keys` it points at.
 */
const BLOB_REFERENCES: ((keys: string[]) => Promise<string[]>)[] = [
  // Image rows, but not tombstones: an expired image's blob should not exist any more.
  async (keys) =>
    (
      await query<{ key: string }>(pool, sql`
        SELECT "storageKey" AS "key" FROM "Image" WHERE "storageKey" = ANY(${keys}::text[]) AND "expiredAt" IS NULL`)
    ).map((row) => row.key),
  // A two-step upload's blob, until it expires (src/tasks/uploads.ts removes it then).
  async (keys) =>
    (await query<{ key: string }>(pool, sql`SELECT "storageKey" AS "key" FROM "Upload" WHERE "storageKey" = ANY(${keys}::text[])`)).map(
      (row) => row.key,
    ),
];

/** Which of `keys` some row points at. */
export async function referencedBlobKeys(keys: string[]): Promise<Set<string>> {
  const referenced = new Set<string>();
  if (keys.length === 0) return referenced;
  for (const source of BLOB_REFERENCES) for (const key of await source(keys)) referenced.add(key);
  return referenced;
}

export interface OrphanRun {
  /** Blobs looked at. */
  listed: number;
  /** Unreferenced blobs older than the grace period that were removed. */
  removed: number;
  /** True when the listing reached its end (the next run starts a new one). */
  done: boolean;
}

/**
 * Takes up to `budget` blobs from `listing` (a BlobStore.list() in progress) and removes
 * those older than `now - graceMs` that no row points at. A blob still being written is
 * invisible to the listing (puts are all or nothing) and a fresh one is left alone, so the
 * grace period only has to cover the time from a write to its row's commit.
 */
export async function sweepOrphanBlobs(
  listing: AsyncIterator<ListedBlob>,
  { now = new Date(), graceMs = ORPHAN_GRACE_MS, budget = ORPHAN_LIST_BUDGET } = {},
): Promise<OrphanRun> {
  const olderThan = now.getTime() - graceMs;
  const run: OrphanRun = { listed: 0, removed: 0, done: false };
  while (run.listed < budget && !run.done) {
    const old: string[] = [];
    const chunk = Math.min(500, budget - run.listed);
    for (let i = 0; i < chunk; i++) {
      const next = await listing.next();
      if (next.done) {
        run.done = true;
        break;
      }
      run.listed++;
      if (next.value.lastModified.getTime() < olderThan) old.push(next.value.key);
    }
    const referenced = await referencedBlobKeys(old);
    const orphans = old.filter((key) => !referenced.has(key));
    if (orphans.length === 0) continue;
    const removed = await deleteBlobs(orphans);
    run.removed += removed;
    orphanBlobsRemoved.inc(removed);
    log.info({ count: removed, keys: orphans.slice(0, 10) }, 'removed blobs no row pointed at');
  }
  return run;
}

/**
 * Deletes blobs nothing points at any more, DELETE_CONCURRENCY at a time; returns how many
 * were deleted. Never throws: a blob that cannot be deleted now (the store is down) is
 * logged and left to the orphan sweep.
 */
async function deleteBlobs(keys: readonly string[]): Promise<number> {
  let deleted = 0;
  let failed = 0;
  let next = 0;
  const store = blobStore();
  await Promise.all(
    Array.from({ length: Math.min(DELETE_CONCURRENCY, keys.length) }, async () => {
      while (next < keys.length) {
        const key = keys[next++];
        try {
          await store.delete(key);
          deleted++;
        } catch (error) {
          if (failed++ === 0) log.warn({ key, err: (error as Error).message }, 'blob not deleted; left for the orphan sweep');
        }
      }
    }),
  );
  if (failed > 1) log.warn({ failed }, 'blobs not deleted; left for the orphan sweep');
  return deleted;
}

export interface RetentionRun {
  tasksMarked: number;
  imagesRemoved: number;
  tasksRemoved: number;
  /** Whether a kind stopped at MAX_BATCHES full batches: there is more to do now. */
  backlog: boolean;
}

/** Up to MAX_BATCHES batches of each kind, as of `now`. */
export async function sweepExpired({ now = new Date(), resultTtlMs = config.resultTtlMs, taskTtlMs = config.taskTtlMs, batch = BATCH } = {}): Promise<RetentionRun> {
  const run: RetentionRun = { tasksMarked: 0, imagesRemoved: 0, tasksRemoved: 0, backlog: false };
  let full = true;
  for (let i = 0; i < MAX_BATCHES && full; i++) {
    const { tasks, images } = await expireImages({ now, resultTtlMs, batch });
    run.tasksMarked += tasks;
    run.imagesRemoved += images;
    full = tasks === batch;
  }
  run.backlog = full;
  full = true;
  for (let i = 0; i < MAX_BATCHES && full; i++) {
    const tasks = await removeEndedTasks({ now, taskTtlMs, batch });
    run.tasksRemoved += tasks;
    full = tasks === batch;
  }
  run.backlog ||= full;
  if (run.imagesRemoved || run.tasksRemoved) {
    log.info({ images: run.imagesRemoved, tasks: run.tasksRemoved }, 'retention removed the images and tasks that outlived their time');
  }
  return run;
}

/** Bytes and objects of the images in the blob store, from their rows (for /metrics). */
export async function storedImageTotals(): Promise<{ objects: number; bytes: number }> {
  const [row] = await query<{ objects: number; bytes: number }>(pool, sql`
    SELECT count(*)::float8 AS "objects", COALESCE(sum("byteSize"), 0)::float8 AS "bytes" FROM "Image" WHERE "expiredAt" IS NULL`);
  return row;
}

/**
 * Runs retention beside a reconciler: tick() starts a run when one is due and none is
 * running (never waiting for it, so the reconciler's own sweep is never held up); stop()
 * waits for the run in progress. Failures are logged, the first and then once a minute.
 */
export function startRetention(): { tick(): void; stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  let stopped = false;
  let nextExpiryAt = 0;
  let nextOrphansAt = 0;
  // The store's listing in progress: each orphan run goes on where the previous one stopped.
  let listing: AsyncIterator<ListedBlob> | null = null;
  let failures = 0;
  let lastFailureLogAt = 0;

  const failed = (what: string, error: unknown) => {
    failures++;
    if (Date.now() - lastFailureLogAt >= 60_000) {
      lastFailureLogAt = Date.now();
      log.warn({ err: (error as Error).message, failures }, `retention: ${what} failed; the next run tries again`);
    }
  };

  const run = async () => {
    const now = Date.now();
    if (now >= nextExpiryAt) {
      try {
        const { backlog } = await sweepExpired({ now: new Date(now) });
        nextExpiryAt = backlog ? 0 : now + EXPIRY_EVERY_MS;
        failures = 0;
      } catch (error) {
        nextExpiryAt = now + EXPIRY_EVERY_MS;
        failed('the expiry sweep', error);
      }
    }
    if (!stopped && now >= nextOrphansAt) {
      nextOrphansAt = now + ORPHAN_EVERY_MS;
      try {
        if (!listing) {
          // A new pass over the store: first what interrupted puts left (disk temp files).
          const incomplete = await blobStore().sweepIncomplete(new Date(now - ORPHAN_GRACE_MS));
          if (incomplete) log.info({ count: incomplete }, 'removed what interrupted blob writes left behind');
          listing = blobStore().list()[Symbol.asyncIterator]();
        }
        const { done } = await sweepOrphanBlobs(listing, { now: new Date(now) });
        if (done) listing = null;
      } catch (error) {
        listing = null; // start the pass again next time
        failed('the orphan blob sweep', error);
      }
    }
  };

  return {
    tick() {
      if (stopped || running) return;
      const now = Date.now();
      if (now < nextExpiryAt && now < nextOrphansAt) return;
      running = run().finally(() => {
        running = null;
      });
    },
    async stop() {
      stopped = true;
      await running;
      await listing?.return?.();
      listing = null;
    },
  };
}
