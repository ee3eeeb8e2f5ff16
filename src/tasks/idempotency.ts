// Idempotent createTask: the same idempotency key of the same owner (API key name) within
// IDEMPOTENCY_KEY_TTL_MS answers with the task that key made, and never makes a second one.
//
// How duplicates are told apart, and made harmless:
//  - A retry that arrives after its first request committed finds the key here (findIdempotencyKey)
//    before its bytes are stored: it is answered from the key's task, nothing is written.
//  - A duplicate arriving while the first with its key is in flight in the same API process
//    waits for it (afterEarlierDuplicates), then finds the key as above: a burst of duplicates
//    stores its bytes at most once per process.
//  - Concurrent duplicates in different processes all miss the key, store their bytes and
//    insert their task; the key row is inserted in the same statement as the task
//    (store.insertTask), so the primary key lets exactly one commit. The others' statements
//    roll back entirely (IdempotencyKeyTaken): they delete the blob they stored and answer
//    with the winner's task. Correctness rests on this step alone; the two above save work.
// A request is "the same" when its fingerprint is: job, resize parameters (defaults filled
// in), run, and the image's bytes (sha-256) or, for a two-step upload, its uploadId. A
// different request under a live key is IdempotencyKeyReused, naming the key's task. Only a created task is remembered: a refused
// request (invalid input or image, quota full) leaves no key behind, so its retry is tried again.
import { createHash } from 'node:crypto';
import { pool } from '../db.ts';
import type { JobDefinition } from '../generated/prisma/enums.ts';
import type { ResizeInput } from '../jobs/image-resize.ts';
import { log } from '../log.ts';
import { query, sql } from '../sql.ts';
import { InvalidInput } from './errors.ts';

/** How long a key answers with its task (DESIGN.md §4: 24 h); afterwards it may make a new one. */
export const IDEMPOTENCY_KEY_TTL_MS = 24 * 60 * 60 * 1000;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

const ttl = sql`make_interval(secs => ${IDEMPOTENCY_KEY_TTL_MS / 1000}::float8)`;

/**
 * The key as given, if it is 1..255 characters (code points) without control characters;
 * else InvalidInput naming `field` (GraphQL: idempotencyKey, REST: the Idempotency-Key header).
 */
export function checkIdempotencyKey(key: string, field = 'idempotencyKey'): string {
  const length = [...key].length;
  if (length < 1 || length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw new InvalidInput(`${field} must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters long, got ${length}`, field);
  }
  if (/[\u0000-\u001f\u007f]/.test(key)) throw new InvalidInput(`${field} must not contain control characters`, field);
  return key;
}

/** What makes two createTask requests the same one, transport aside (GraphQL and REST agree). */
export interface FingerprintedRequest {
  jobDefinition: JobDefinition;
  resize: ResizeInput;
  run: boolean;
  /** The source image: imageOfBytes(sha256) for uploaded bytes. */
  image: string;
  /** Checked already; null when none. */
  callbackUrl?: string | null;
}

/** The image part of a fingerprint for uploaded bytes. */
export const imageOfBytes = (sha256: string) => `sha256:${sha256}`;

/** Hex sha-256 of the request, defaults filled in (an omitted `fit` and `fit: COVER` are the same request). */
export function requestFingerprint(request: FingerprintedRequest): string {
  const { resize } = request;
  const canonical = [
    request.jobDefinition,
    resize.width ?? null,
    resize.height ?? null,
    resize.fit ?? 'COVER',
    resize.format ?? null,
    resize.quality ?? null,
    resize.withoutEnlargement ?? false,
    request.run,
    request.image,
    request.callbackUrl ?? null,
  ];
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}

export interface IdempotencyRecord {
  taskId: string;
  fingerprint: string;
}

/**
 * The live record of `key` for `ownerId`, or null. An expired one is deleted on the way, so
 * that the key can be inserted again with a new task.
 */
export async function findIdempotencyKey(ownerId: string, key: string): Promise<IdempotencyRecord | null> {
  const rows = await query<IdempotencyRecord>(pool, sql`
    WITH expired AS (
      DELETE FROM "IdempotencyKey" WHERE "ownerId" = ${ownerId}::text AND "key" = ${key}::text AND "createdAt" <= now() - ${ttl}
    )
    SELECT "taskId", "fingerprint" FROM "IdempotencyKey"
    WHERE "ownerId" = ${ownerId}::text AND "key" = ${key}::text AND "createdAt" > now() - ${ttl}`);
  return rows[0] ?? null;
}

/** Requests of this process in flight, per owner and key. */
const inFlight = new Map<string, Promise<unknown>>();

/**
 * Runs `work` for `key` of `ownerId`, after the request with that key already running in
 * this process (if any) has finished, whatever its outcome. Only the first registers: the
 * others, once it is done, usually find its key and are answered without storing anything.
 */
export async function afterEarlierDuplicates<T>(ownerId: string, key: string, work: () => Promise<T>): Promise<T> {
  const slot = JSON.stringify([ownerId, key]);
  const earlier = inFlight.get(slot);
  if (earlier) {
    await earlier.catch(() => {});
    return work();
  }
  const running = work();
  inFlight.set(slot, running);
  try {
    return await running;
  } finally {
    if (inFlight.get(slot) === running) inFlight.delete(slot);
  }
}

/** A sweep of the reconciler: deletes up to `limit` expired keys, oldest first. */
export async function sweepExpiredIdempotencyKeys(limit: number): Promise<number> {
  const rows = await query<{ n: number }>(pool, sql`
    WITH gone AS (
      DELETE FROM "IdempotencyKey" WHERE ("ownerId", "key") IN (
        SELECT "ownerId", "key" FROM "IdempotencyKey" WHERE "createdAt" <= now() - ${ttl}
        ORDER BY "createdAt" LIMIT ${limit}::int
      )
      RETURNING 1
    )
    SELECT count(*)::int AS "n" FROM gone`);
  const n = rows[0]?.n ?? 0;
  if (n) log.debug({ count: n }, 'expired idempotency keys removed');
  return n;
}
