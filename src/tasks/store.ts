// The only writer of tasks, and the one home of their transitions. Each transition is ONE
// SQL statement: a conditional UPDATE (WHERE status = ANY(<from>) [AND attempts = <fencing
// token>], SET status = <to>, both from TRANSITIONS in lifecycle.ts) chained with the
// TaskEvent insert (and, for DONE, the result image insert), so a transition and its audit
// row commit together or not at all, in one round trip. A statement that matches no row
// means "somebody else got there first" and changes nothing.
// Once it committed, every change (each transition, and progress) is published here to the
// owner's subscribers (events.ts), so no caller can forget to. Publishing never throws: the
// change is in PostgreSQL already, and subscribers re-read it after a lost message (resync,
// catch-up), so a failed publish delays a live update but loses nothing.
// Image rows only point at blobs (storageKey): the bytes are in the blob store, written
// before the row that points at them commits, removed after the row is gone.
import { randomUUID } from 'node:crypto';
import type { ImageFormat, ResizeParams } from '../jobs/image-resize.ts';
import type { PoolClient } from 'pg';
import { pool } from '../db.ts';
import { config } from '../config.ts';
import type { Task } from '../generated/prisma/client.ts';
import type { JobDefinition, TaskStatus } from '../generated/prisma/enums.ts';
import { countTransition } from '../metrics.ts';
import { empty, query, sql, type Fragment } from '../sql.ts';
import { publishChange } from './events.ts';
import { ACTIVE_STATUSES, retryDelayMs, TRANSITIONS, type Transition } from './lifecycle.ts';

/** A task as the domain sees it: `params` holds what insertTask wrote, the validated parameters of its job. */
export type TaskRow = Omit<Task, 'params'> & { params: ResizeParams };

/** Tasks read through Prisma, which types the jsonb column `params` as any JSON value. */
export const asTaskRows = (tasks: Task[]): TaskRow[] => tasks as unknown as TaskRow[];

/** Publishes a committed change (never throws; see the header). */
async function published(task: TaskRow | undefined): Promise<TaskRow | null> {
  if (!task) return null;
  await publishChange(task);
  return task;
}

/** A committed transition: counted in the process that made it (see src/metrics.ts), then published. */
function committed(task: TaskRow | undefined): Promise<TaskRow | null> {
  if (task) countTransition(task);
  return published(task);
}

/** An image whose blob is in the store already; `id` becomes its row's id. */
export interface StoredImage {
  id: string;
  format: ImageFormat;
  width: number;
  height: number;
  byteSize: number;
  storageKey: string;
  sha256: string;
}

const statuses = (list: readonly TaskStatus[]) => sql`${[...list]}::"TaskStatus"[]`;
/** An interval of `ms` milliseconds. */
const millis = (ms: number) => sql`make_interval(secs => ${ms / 1000}::float8)`;

/** UPDATE … SET status = to, … WHERE id AND status ∈ from AND <extra>, plus its TaskEvent, in one statement. */
async function transition(
  id: string,
  move: Transition,
  set: Fragment,
  message: string | null,
  extraWhere: Fragment = empty,
): Promise<TaskRow | null> {
  const rows = await query<TaskRow>(pool, sql`
    WITH t AS (
      UPDATE "Task" SET "status" = ${move.to}::"TaskStatus", ${set}, "version" = "version" + 1, "updatedAt" = now()
      WHERE "id" = ${id}::uuid AND "status" = ANY(${statuses(move.from)}) ${extraWhere}
      RETURNING *
    ), ev AS (
      INSERT INTO "TaskEvent" ("taskId", "status", "message", "version")
      SELECT "id", "status", ${message}::text, "version" FROM t
    )
    SELECT * FROM t`);
  return committed(rows[0]);
}

/** A concurrent request with the same idempotency key made its task first; this one's insert was rolled back. */
export class IdempotencyKeyTaken extends Error {
  override name = 'IdempotencyKeyTaken';
}

export interface NewTask {
  ownerId: string;
  jobDefinition: JobDefinition;
  params: ResizeParams;
  source: StoredImage;
  run: boolean;
  limit: number;
  /** Checked already (src/callbacks/address-policy.ts). */
  callbackUrl?: string | null;
  idempotency?: { key: string; fingerprint: string } | null;
}

/**
 * Inserts the source image and the task (CREATED, or QUEUED when `run`) with its events,
 * unless the owner already holds `limit` active tasks. The per-owner advisory lock makes
 * the quota exact under concurrency. Returns null when the quota is full.
 * With `idempotency`, the key's row is inserted in the same statement: if the owner's key is
 * taken (a concurrent duplicate committed first), nothing is inserted and IdempotencyKeyTaken
 * is thrown. (An expired row must have been deleted before: see findIdempotencyKey.)
 * `alongside`: statements that must commit together with the task (uploads.ts claims its
 * upload); it runs first in the task's transaction, and throwing rolls everything back.
 */
export async function insertTask(input: NewTask, alongside?: (client: PoolClient) => Promise<void>): Promise<TaskRow | null> {
  const { source, idempotency } = input;
  // One round trip: the function takes the owner's quota lock, counts, and inserts the image,
  // the task and its events (prisma/migrations/*_insert_task_function).
  const insert = sql`
    SELECT * FROM "tasklane_insert_task"(
      ${randomUUID()}::uuid, ${source.id}::uuid, ${input.ownerId}::text, ${[...ACTIVE_STATUSES]}::"TaskStatus"[], ${input.limit}::int,
      ${source.format}::"ImageFormat", ${source.width}::int, ${source.height}::int, ${source.byteSize}::int,
      ${source.storageKey}::text, ${source.sha256}::text,
      ${input.jobDefinition}::"JobDefinition", ${JSON.stringify(input.params)}::jsonb, ${input.run}::boolean)`;
  // With an idempotency key, the key's row in the same statement (its primary key lets one
  // concurrent duplicate commit).
  const keyed = idempotency
    ? sql`
      WITH t AS (${insert}), k AS (
        INSERT INTO "IdempotencyKey" ("ownerId", "key", "fingerprint", "taskId")
        SELECT "ownerId", ${idempotency.key}::text, ${idempotency.fingerprint}::text, "id" FROM t
      )
      SELECT * FROM t`
    : insert;
  // With a callback URL, the task must never exist without it (it could end before a later
  // write): it is set in the same transaction.
  const inOneTransaction = async (client: PoolClient) => {
    await alongside?.(client);
    const [created] = await query<TaskRow>(client, keyed);
    if (!created) throw new QuotaFull(); // nothing of this request may stay (alongside's work neither)
    if (!input.callbackUrl) return [created];
    return query<TaskRow>(client, sql`
      UPDATE "Task" SET "callbackUrl" = ${input.callbackUrl}::text WHERE "id" = ${created.id}::uuid RETURNING *`);
  };
  let rows: TaskRow[];
  try {
    rows = alongside || input.callbackUrl ? await inTransaction(inOneTransaction) : await query<TaskRow>(pool, keyed);
  } catch (error) {
    if (error instanceof QuotaFull) return null;
    const e = error as { code?: string; constraint?: string };
    if (e.code === '23505' && e.constraint === 'IdempotencyKey_pkey') throw new IdempotencyKeyTaken('idempotency key taken', { cause: error });
    throw error;
  }
  const task = rows[0];
  if (task && input.run) countTransition({ status: 'CREATED', jobDefinition: task.jobDefinition });
  return committed(task);
}

/** Rolls back insertTask's transaction when the owner's quota is full. */
class QuotaFull extends Error {}

/** Runs `work` in a transaction on one connection: committed if it returns, rolled back if it throws. */
export async function inTransaction<T>(work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch((rollback: Error) => (broken = rollback));
    throw error;
  } finally {
    client.release(broken);
  }
}

export function markQueued(id: string, ownerId: string): Promise<TaskRow | null> {
  return transition(id, TRANSITIONS.run, sql`"runAfter" = NULL`, 'queued', sql`AND "ownerId" = ${ownerId}`);
}

export interface Claim {
  task: TaskRow;
  /** When the task entered QUEUED: its last change before this claim (nothing else writes a QUEUED task). */
  queuedAt: Date;
  /** The blob store key of the source image (null if it is gone: only a delete removes it). */
  sourceKey: string | null;
}

/**
 * QUEUED → RUNNING for one delivery; `attempts` becomes this delivery's fencing token.
 * The statement also returns when the task was queued and its source's key. A task waiting out its
 * retry backoff is not claimed (a stray job redelivered early is dropped; the reconciler
 * enqueues the task when it is due). Nor is a task whose owner already has `maxRunning`
 * tasks RUNNING while another key's task waits its turn: it stays QUEUED without spending an attempt, marked waitingForSlot, until
 * wakeWaiting enqueues it again ('waiting'). The count and the claim are exact across
 * processes: both happen under the owner's lock (tasklane_claim_task, prisma/migrations/*_running_slots).
 */
export async function claim(id: string, leaseMs: number, maxRunning: number): Promise<Claim | 'waiting' | null> {
  const rows = await query<TaskRow & { queuedAt: Date; claimed: boolean; sourceKey: string | null }>(pool, sql`
    SELECT (c."task").*, c."queuedAt", (c."task")."id" IS NOT NULL AS "claimed",
      -- A subquery, not a join: the planner guesses 1000 rows for the function and would
      -- read the whole Image table to hash-join them.
      (SELECT i."storageKey" FROM "Image" i WHERE i."id" = (c."task")."sourceImageId") AS "sourceKey"
    FROM "tasklane_claim_task"(${id}::uuid, ${millis(leaseMs)}, ${maxRunning}::int) c`);
  const row = rows[0];
  if (!row) return null;
  if (!row.claimed) return 'waiting';
  const { queuedAt, sourceKey, claimed: _, ...task } = row;
  return { task: (await committed(task))!, queuedAt, sourceKey };
}

/** The most waiting tasks one wake-up takes off waiting when the cap does not bind (nobody else waits). */
const WAKE_BATCH = 500;

/**
 * Takes up to as many of `ownerId`'s waitingForSlot tasks off waiting as it has free running
 * slots — or up to WAKE_BATCH when no other key waits — oldest first, under the same lock as
 * claim; the caller enqueues the returned ids.
 */
export async function wakeWaiting(ownerId: string, maxRunning: number): Promise<string[]> {
  const rows = await query<{ id: string }>(pool, sql`
    SELECT "tasklane_wake_waiting"(${ownerId}::text, ${maxRunning}::int, ${WAKE_BATCH}::int) AS "id"`);
  return rows.map((row) => row.id);
}

/** Owners with tasks waiting for a running slot. */
export async function ownersWaiting(limit: number): Promise<string[]> {
  const rows = await query<{ ownerId: string }>(pool, sql`
    SELECT DISTINCT "ownerId" FROM "Task" WHERE "status" = 'QUEUED' AND "waitingForSlot" LIMIT ${limit}::int`);
  return rows.map((row) => row.ownerId);
}

/** Extends the lease of the delivery `attempt`; false if that delivery no longer owns the task. */
export async function renewLease(id: string, attempt: number, leaseMs: number): Promise<boolean> {
  const rows = await query<{ id: string }>(pool, sql`
    UPDATE "Task" SET "leaseUntil" = now() + ${millis(leaseMs)}
    WHERE "id" = ${id}::uuid AND "status" = 'RUNNING' AND "attempts" = ${attempt}::int
    RETURNING "id"`);
  return rows.length === 1;
}

/** Persists progress (a change, so `version` moves and it is published; not a transition, so no TaskEvent). */
export async function setProgress(id: string, attempt: number, progress: number, leaseMs: number): Promise<TaskRow | null> {
  const rows = await query<TaskRow>(pool, sql`
    UPDATE "Task" SET "progress" = ${progress}::float8, "version" = "version" + 1, "updatedAt" = now(),
      "leaseUntil" = now() + ${millis(leaseMs)}
    WHERE "id" = ${id}::uuid AND "status" = 'RUNNING' AND "attempts" = ${attempt}::int AND "progress" < ${progress}::float8
    RETURNING *`);
  return published(rows[0]);
}

/**
 * RUNNING → DONE for delivery `attempt`, inserting the result image's row in the same
 * statement: a delivery that lost the task (deleted, timed out, taken over) writes nothing
 * at all, and null tells its caller to remove the result's blob.
 */
export async function complete(id: string, attempt: number, result: StoredImage): Promise<TaskRow | null> {
  const rows = await query<TaskRow>(pool, sql`
    WITH t AS (
      UPDATE "Task" SET "status" = ${TRANSITIONS.complete.to}::"TaskStatus", "resultImageId" = ${result.id}::uuid, "progress" = 1, "error" = NULL,
        "finishedAt" = now(), "leaseUntil" = NULL, "version" = "version" + 1, "updatedAt" = now()
      WHERE "id" = ${id}::uuid AND "status" = ANY(${statuses(TRANSITIONS.complete.from)}) AND "attempts" = ${attempt}::int
      RETURNING *
    ), img AS (
      INSERT INTO "Image" ("id", "ownerId", "format", "width", "height", "byteSize", "storageKey", "sha256")
      SELECT ${result.id}::uuid, t."ownerId", ${result.format}::"ImageFormat", ${result.width}::int, ${result.height}::int,
             ${result.byteSize}::int, ${result.storageKey}::text, ${result.sha256}::text
      FROM t
    ), ev AS (
      INSERT INTO "TaskEvent" ("taskId", "status", "message", "version")
      SELECT "id", "status", 'done', "version" FROM t
    )
    SELECT * FROM t`);
  return committed(rows[0]);
}

/** RUNNING → FAILED with a reason, only if delivery `attempt` still holds the task. */
export function fail(id: string, error: string, attempt: number): Promise<TaskRow | null> {
  return transition(
    id,
    TRANSITIONS.fail,
    sql`"error" = ${error}::text, "finishedAt" = now(), "leaseUntil" = NULL`,
    error,
    sql`AND "attempts" = ${attempt}::int`,
  );
}

/** RUNNING → QUEUED after a transient failure; not to be enqueued again before `delayMs`. */
export function retryLater(id: string, attempt: number, reason: string, delayMs: number): Promise<TaskRow | null> {
  return transition(
    id,
    TRANSITIONS.retry,
    sql`"leaseUntil" = NULL, "progress" = 0, "runAfter" = now() + ${millis(delayMs)}`,
    `retrying after: ${reason}`,
    sql`AND "attempts" = ${attempt}::int`,
  );
}

/**
 * Ends delivery `attempt` after a transient failure (the worker's transient errors, the
 * reconciler's lost workers): queued again after a backoff (retryDelayMs), or FAILED
 * ("gave up after N attempts: <reason>") once the task has had MAX_ATTEMPTS deliveries.
 */
export function retryOrFail(id: string, attempt: number, reason: string): Promise<TaskRow | null> {
  return attempt >= config.maxAttempts
    ? fail(id, `gave up after ${attempt} attempts: ${reason}`, attempt)
    : retryLater(id, attempt, reason, retryDelayMs(attempt));
}

/**
 * Any non-DELETED → DELETED: both image rows are removed, the row and its audit trail stay.
 * FOR UPDATE serialises with a finishing worker: whichever commits first, no image survives.
 * Returns the task and the keys of the removed images' blobs, for the caller to delete
 * from the store now that no row points at them.
 */
export async function markDeleted(id: string, ownerId: string): Promise<{ task: TaskRow; blobKeys: string[] } | null> {
  const rows = await query<TaskRow & { blobKeys: string[] | null }>(pool, sql`
    WITH old AS (
      SELECT "id", "sourceImageId", "resultImageId" FROM "Task"
      WHERE "id" = ${id}::uuid AND "ownerId" = ${ownerId}::text AND "status" = ANY(${statuses(TRANSITIONS.delete.from)})
      FOR UPDATE
    ), t AS (
      UPDATE "Task" SET "status" = ${TRANSITIONS.delete.to}::"TaskStatus", "sourceImageId" = NULL, "resultImageId" = NULL, "leaseUntil" = NULL,
        "runAfter" = NULL, "finishedAt" = COALESCE("finishedAt", now()), "version" = "version" + 1, "updatedAt" = now()
      FROM old WHERE "Task"."id" = old."id"
      RETURNING "Task".*
    ), gone AS (
      DELETE FROM "Image" WHERE "id" IN (
        SELECT "sourceImageId" FROM old UNION ALL SELECT "resultImageId" FROM old
      )
      RETURNING "storageKey"
    ), ev AS (
      INSERT INTO "TaskEvent" ("taskId", "status", "message", "version")
      SELECT "id", "status", 'deleted', "version" FROM t
    )
    SELECT t.*, (SELECT array_agg("storageKey") FROM gone) AS "blobKeys" FROM t`);
  const row = rows[0];
  if (!row) return null;
  const { blobKeys, ...task } = row;
  return { task: (await committed(task))!, blobKeys: blobKeys ?? [] };
}

export async function findTask(id: string, ownerId?: string): Promise<TaskRow | null> {
  const owned = ownerId === undefined ? empty : sql`AND "ownerId" = ${ownerId}::text`;
  const rows = await query<TaskRow>(pool, sql`SELECT * FROM "Task" WHERE "id" = ${id}::uuid ${owned}`);
  return rows[0] ?? null;
}

/** RUNNING tasks whose worker stopped renewing its lease. */
export function findExpiredLeases(limit: number) {
  return query<{ id: string; attempts: number }>(pool, sql`
    SELECT "id", "attempts" FROM "Task" WHERE "status" = 'RUNNING' AND "leaseUntil" < now()
    ORDER BY "leaseUntil" LIMIT ${limit}::int`);
}

/**
 * QUEUED tasks that should have a job in Redis by now: retries whose backoff is over
 * (nobody else enqueues those), and others queued more than `graceMs` ago (their
 * producer enqueues them; we step in when that failed or Redis forgot). Not those waiting
 * for a running slot of their owner: they have no job on purpose (see claim).
 */
export function findDueQueued(graceMs: number, limit: number) {
  return query<{ id: string }>(pool, sql`
    SELECT "id" FROM "Task"
    WHERE "status" = 'QUEUED' AND NOT "waitingForSlot"
      AND CASE WHEN "runAfter" IS NULL THEN "updatedAt" < now() - ${millis(graceMs)}
               ELSE "runAfter" <= now() END
    ORDER BY "updatedAt" LIMIT ${limit}::int`);
}

/**
 * How long the longest-waiting due QUEUED task has been due, in ms (0 when none): since its
 * retry backoff ended, or since it was queued. The end-to-end liveness signal of the queue.
 * A task waiting for a running slot of its key is not due: an idle worker is right to leave it.
 */
export async function oldestDueQueuedMs(): Promise<number> {
  const [row] = await query<{ ms: number | null }>(pool, sql`
    SELECT (extract(epoch FROM now() - min(COALESCE("runAfter", "updatedAt"))) * 1000)::float8 AS "ms"
    FROM "Task" WHERE "status" = 'QUEUED' AND NOT "waitingForSlot" AND COALESCE("runAfter", "updatedAt") <= now()`);
  return Math.max(0, row?.ms ?? 0);
}

/**
 * RUNNING → QUEUED after the blob store failed this delivery and still fails its own check
 * (unreachable, read-only, full): not counted, as with handBack, because an outage of the
 * store is nobody's task's fault and must not use up MAX_ATTEMPTS; not to be enqueued again
 * before `delayMs`. A fault only this task meets (the store takes a probe but not its
 * result) is an ordinary retryLater, so a task cannot loop uncounted while the store works.
 * (So is a delivery that fails in the instant the store comes back: one attempt per outage.)
 */
export function waitForStore(id: string, attempt: number, reason: string, delayMs: number): Promise<TaskRow | null> {
  return transition(
    id,
    TRANSITIONS.waitForStore,
    sql`"attempts" = "attempts" - 1, "leaseUntil" = NULL, "progress" = 0, "runAfter" = now() + ${millis(delayMs)}`,
    `retrying after: ${reason} (the blob store is down: this delivery is not counted)`,
    sql`AND "attempts" = ${attempt}::int`,
  );
}

/** RUNNING → QUEUED without counting the delivery: a worker shutting down hands its job back. */
export function handBack(id: string, attempt: number): Promise<TaskRow | null> {
  return transition(
    id,
    TRANSITIONS.handBack,
    sql`"attempts" = "attempts" - 1, "leaseUntil" = NULL, "progress" = 0, "runAfter" = NULL`,
    'handed back by a worker shutting down',
    sql`AND "attempts" = ${attempt}::int`,
  );
}
