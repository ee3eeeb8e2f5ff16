// The callback outbox in PostgreSQL, the only state of deliveries (Redis plays no part).
// Rows are inserted by the trigger "Task_callback" with the transition that causes them
// (migration *_callbacks); this module claims them, records attempts and reads them back.
//
// Claiming is a lease, not a held transaction: the claim (FOR UPDATE SKIP LOCKED, so any
// number of processes on any hosts claim disjoint rows) moves "nextAttemptAt" past the
// attempt's longest possible duration and bumps "attempts", which then fences the record of
// the outcome. No connection is held while the receiver answers. A process that dies
// mid-attempt leaves "attemptStartedAt" set: when the lease runs out the next claim records
// that attempt as having no outcome and makes a new one (at-least-once, as Standard Webhooks
// receivers expect: they deduplicate on webhook-id).
import { pool } from '../db.ts';
import { query, sql } from '../sql.ts';

export interface CallbackSnapshot {
  id: string;
  status: string;
  error: string | null;
  progress: number;
  attempts: number;
  version: number;
  resultOfJob: string | null;
  result: { id: string; format: string; width: number; height: number; byteSize: number } | null;
  finishedAt: string | null;
}

export interface ClaimedCallback {
  id: string;
  taskId: string;
  ownerId: string;
  event: string;
  url: string;
  data: CallbackSnapshot;
  createdAt: Date;
  /** This attempt's number (1 for the first). */
  attempts: number;
  attemptStartedAt: Date;
}

const millis = (ms: number) => sql`make_interval(secs => ${ms / 1000}::float8)`;

/** Up to `limit` due messages, each now leased for `leaseMs` to this caller's attempt. */
export function claimDue(limit: number, leaseMs: number): Promise<ClaimedCallback[]> {
  return query<ClaimedCallback>(pool, sql`
    WITH due AS (
      SELECT "id" FROM "Callback"
      WHERE "nextAttemptAt" <= now()
      ORDER BY "nextAttemptAt"
      LIMIT ${limit}::int
      FOR UPDATE SKIP LOCKED
    ), lost AS (
      INSERT INTO "CallbackAttempt" ("callbackId", "taskId", "attempt", "at", "error")
      SELECT c."id", c."taskId", c."attempts", c."attemptStartedAt", 'no outcome recorded: the delivering process stopped (or lost PostgreSQL) during the attempt'
      FROM "Callback" c JOIN due ON due."id" = c."id"
      WHERE c."attemptStartedAt" IS NOT NULL
    )
    UPDATE "Callback" c SET "attempts" = c."attempts" + 1, "attemptStartedAt" = now(), "nextAttemptAt" = now() + ${millis(leaseMs)}
    FROM due WHERE c."id" = due."id"
    RETURNING c."id", c."taskId", c."ownerId", c."event", c."url", c."data", c."createdAt", c."attempts", c."attemptStartedAt"`);
}

export interface AttemptOutcome {
  statusCode: number | null;
  error: string | null;
  /** A 2xx answer: the message is delivered. */
  accepted: boolean;
}

export interface RecordedAttempt {
  delivered: boolean;
  gaveUp: boolean;
  nextAttemptAt: Date | null;
}

/**
 * Records attempt `claim.attempts` and what comes next, in one statement: delivered; given up
 * (a failed attempt that started once the message was `retryForMs` old); or the next attempt
 * after `delayMs`, but never later than that age, so the last one starts at it. Null when the
 * attempt no longer owns the message (its lease ran out and another claim took it over,
 * recording it as without outcome).
 */
export async function recordAttempt(
  claim: Pick<ClaimedCallback, 'id' | 'attempts' | 'attemptStartedAt'>,
  outcome: AttemptOutcome,
  delayMs: number,
  retryForMs: number,
): Promise<RecordedAttempt | null> {
  // Judged by when the attempt started, so the last attempt starts at that age or later.
  const over = sql`"attemptStartedAt" >= "createdAt" + ${millis(retryForMs)}`;
  const rows = await query<RecordedAttempt>(pool, sql`
    WITH c AS (
      UPDATE "Callback" SET
        "attemptStartedAt" = NULL,
        "deliveredAt" = CASE WHEN ${outcome.accepted}::boolean THEN now() END,
        "gaveUpAt" = CASE WHEN NOT ${outcome.accepted}::boolean AND ${over} THEN now() END,
        "nextAttemptAt" = CASE WHEN ${outcome.accepted}::boolean OR ${over} THEN NULL
                               ELSE LEAST(now() + ${millis(delayMs)}, "createdAt" + ${millis(retryForMs)}) END
      WHERE "id" = ${claim.id}::uuid AND "attempts" = ${claim.attempts}::int AND "attemptStartedAt" IS NOT NULL
      RETURNING *
    ), a AS (
      INSERT INTO "CallbackAttempt" ("callbackId", "taskId", "attempt", "at", "statusCode", "error")
      SELECT "id", "taskId", ${claim.attempts}::int, ${claim.attemptStartedAt}::timestamptz, ${outcome.statusCode}::int, ${outcome.error}::text
      FROM c
    )
    SELECT "deliveredAt" IS NOT NULL AS "delivered", "gaveUpAt" IS NOT NULL AS "gaveUp", "nextAttemptAt" FROM c`);
  return rows[0] ?? null;
}

export interface CallbackAttemptRow {
  taskId: string;
  event: string;
  attempt: number;
  at: Date;
  statusCode: number | null;
  error: string | null;
}

/** Every attempt of the tasks' callbacks, oldest first (per task). */
export function attemptsOf(taskIds: string[]): Promise<CallbackAttemptRow[]> {
  return query<CallbackAttemptRow>(pool, sql`
    SELECT a."taskId", c."event", a."attempt", a."at", a."statusCode", a."error"
    FROM "CallbackAttempt" a JOIN "Callback" c ON c."id" = a."callbackId"
    WHERE a."taskId" = ANY(${taskIds}::uuid[])
    ORDER BY a."taskId", a."at", a."id"`);
}

/** Messages neither delivered nor given up, and the age of the oldest in seconds (0: none). */
export async function pendingCallbacks(): Promise<{ count: number; oldestSeconds: number }> {
  const [row] = await query<{ count: number; oldestSeconds: number | null }>(pool, sql`
    SELECT count(*)::int AS "count", extract(epoch FROM now() - min("createdAt"))::float8 AS "oldestSeconds"
    FROM "Callback" WHERE "nextAttemptAt" IS NOT NULL`);
  return { count: row?.count ?? 0, oldestSeconds: Math.max(0, row?.oldestSeconds ?? 0) };
}
