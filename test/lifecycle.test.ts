// The task lifecycle in-process, against the real PostgreSQL and Redis (Redis behind a TCP
// proxy this file owns): every transition from every status as TRANSITIONS says, fencing by
// the delivery's attempt, retryOrFail, that each committed change is published exactly once
// on the owner's Redis channel (and that a failed publish loses nothing), the reconciler, and
// watchTask. End to end with real workers: test/core.e2e.test.ts, test/recovery.e2e.test.ts.
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { TaskStatus } from '../src/generated/prisma/enums.ts';
import type { ResizeParams } from '../src/jobs/image-resize.ts';
import { migrate } from '../src/migrate.ts';
import type { TaskChange } from '../src/tasks/events.ts';
import { TASK_STATUSES, TRANSITIONS } from '../src/tasks/lifecycle.ts';
import type { StoredImage, TaskRow } from '../src/tasks/store.ts';
import { until } from './helpers/client.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { startRedisProxy, type RedisProxy } from './helpers/redis-proxy.ts';

const MAX_ATTEMPTS = 3;
const LEASE_MS = 60_000;
/** A running-slot cap that never binds here (test/running-slots.test.ts tests the cap). */
const NO_CAP = 1_000_000;
const OWNER = `key-${randomBytes(3).toString('hex')}`;
const caller = { keyId: 'lifecycle-test', owner: OWNER };
const PARAMS: ResizeParams = { width: 8, height: null, fit: 'INSIDE', format: 'PNG', quality: null, withoutEnlargement: true };

let infra: TestInfra;
let proxy: RedisProxy;
let store: typeof import('../src/tasks/store.ts');
let reconciler: typeof import('../src/tasks/reconciler.ts');
let queue: typeof import('../src/tasks/queue.ts');
let watch: typeof import('../src/tasks/watch.ts');
let closeAll: () => Promise<void>;

/** Every change published on OWNER's channel, as a subscriber (an API process) hears it. */
const heard: TaskChange[] = [];

beforeAll(async () => {
  infra = await createInfra('lifecycle');
  await migrate(infra.databaseUrl);
  proxy = await startRedisProxy();
  // The modules read their configuration when first imported.
  Object.assign(process.env, {
    ...infra.storageEnv,
    DATABASE_URL: infra.databaseUrl,
    REDIS_URL: proxy.url,
    REDIS_PREFIX: infra.redisPrefix,
    MAX_ATTEMPTS: String(MAX_ATTEMPTS),
    // Only Redis' messages reach the listeners (no periodic catch-up from PostgreSQL).
    LIVE_RESYNC_INTERVAL_MS: '0',
    LOG_LEVEL: 'silent',
  });
  store = await import('../src/tasks/store.ts');
  reconciler = await import('../src/tasks/reconciler.ts');
  queue = await import('../src/tasks/queue.ts');
  watch = await import('../src/tasks/watch.ts');
  const events = await import('../src/tasks/events.ts');
  const [{ prisma }, { closeRedis }] = await Promise.all([import('../src/db.ts'), import('../src/redis.ts')]);
  const unsubscribe = await events.subscribeToOwner(OWNER, (change) => heard.push(change));
  closeAll = async () => {
    unsubscribe();
    await queue.closeQueue();
    await closeRedis();
    await prisma.$disconnect();
  };
});

afterAll(async () => {
  await closeAll?.();
  await infra?.dispose();
  await proxy?.close();
});

const sql = (text: string, params?: unknown[]) => infra.sql(text, params);

/** An image row's worth of metadata (no blob: nothing here reads the bytes). */
function image(): StoredImage {
  const id = randomUUID();
  return { id, format: 'PNG', width: 8, height: 8, byteSize: 100, storageKey: `lifecycle/${id}`, sha256: '0'.repeat(64) };
}

const create = async () => (await store.insertTask({ ownerId: OWNER, jobDefinition: 'IMAGE_RESIZE', params: PARAMS, source: image(), run: false, limit: NO_CAP }))!;

async function claim(id: string): Promise<TaskRow> {
  const claimed = await store.claim(id, LEASE_MS, NO_CAP);
  if (claimed === null || claimed === 'waiting') throw new Error(`could not claim ${id}: ${claimed}`);
  return claimed.task;
}

/** A task in `status`, brought there through the lifecycle's own transitions. */
async function inStatus(status: TaskStatus): Promise<TaskRow> {
  const task = await create();
  if (status === 'CREATED') return task;
  if (status === 'DELETED') return (await store.markDeleted(task.id, OWNER))!.task;
  const queued = (await store.markQueued(task.id, OWNER))!;
  if (status === 'QUEUED') return queued;
  const running = await claim(task.id);
  if (status === 'RUNNING') return running;
  if (status === 'DONE') return (await store.complete(task.id, running.attempts, image()))!;
  return (await store.fail(task.id, 'it broke', running.attempts))!;
}

/** A RUNNING task in its `attempt`-th delivery (each earlier one retried, with no backoff). */
async function runningAt(attempt: number): Promise<TaskRow> {
  let task = await inStatus('RUNNING');
  while (task.attempts < attempt) {
    await store.retryLater(task.id, task.attempts, 'a blip', 0);
    task = await claim(task.id);
  }
  return task;
}

async function current(id: string) {
  const [row] = await sql(`SELECT status, version, attempts, error, progress, "runAfter", "resultImageId" FROM "Task" WHERE id = $1`, [id]);
  return row as { status: TaskStatus; version: number; attempts: number; error: string | null; progress: number; runAfter: Date | null; resultImageId: string | null };
}

const eventsOf = async (id: string) =>
  (await sql(`SELECT status, version, message FROM "TaskEvent" WHERE "taskId" = $1 ORDER BY id`, [id])) as { status: TaskStatus; version: number; message: string | null }[];

/** Tasks created only to mark a point in the stream of messages (see heardSoFar). */
const markers = new Set<string>();

/**
 * Returns once every change published so far has been heard: this process publishes on one
 * connection, and Redis delivers in order, so a change published now is heard after them.
 */
async function heardSoFar(): Promise<void> {
  const marker = await create();
  markers.add(marker.id);
  await until(async () => heard.some((change) => change.id === marker.id), Boolean, 10_000, 5);
}

/** What `action` returned, and every change published while it ran (nothing else publishes meanwhile). */
async function publishedBy<T>(action: () => Promise<T>): Promise<{ result: T; changes: TaskChange[] }> {
  await heardSoFar();
  const from = heard.length;
  const result = await action();
  await heardSoFar();
  return { result, changes: heard.slice(from).filter((change) => !markers.has(change.id)) };
}

const message = (task: Pick<TaskRow, 'id' | 'status' | 'version' | 'progress'>): TaskChange => ({
  id: task.id,
  ownerId: OWNER,
  status: task.status,
  version: task.version,
  progress: task.progress,
});

/** Each transition of the table, applied by whoever may (the delivery holding the task, its owner). */
const apply = {
  run: (task) => store.markQueued(task.id, task.ownerId),
  claim: async (task) => {
    const claimed = await store.claim(task.id, LEASE_MS, NO_CAP);
    return claimed === null || claimed === 'waiting' ? null : claimed.task;
  },
  complete: (task) => store.complete(task.id, task.attempts, image()),
  fail: (task) => store.fail(task.id, 'it broke', task.attempts),
  retry: (task) => store.retryLater(task.id, task.attempts, 'a blip', 0),
  handBack: (task) => store.handBack(task.id, task.attempts),
  waitForStore: (task) => store.waitForStore(task.id, task.attempts, 'the store is down', 0),
  delete: async (task) => (await store.markDeleted(task.id, task.ownerId))?.task ?? null,
} satisfies Record<keyof typeof TRANSITIONS, (task: TaskRow) => Promise<TaskRow | null>>;

const cases = Object.entries(TRANSITIONS).flatMap(([name, { from, to }]) =>
  TASK_STATUSES.map((status) => ({ name: name as keyof typeof TRANSITIONS, status, to, allowed: (from as readonly TaskStatus[]).includes(status) })),
);

describe('transitions, as TRANSITIONS says', () => {
  it.each(cases)('$name from $status (allowed: $allowed)', async ({ name, status, to, allowed }) => {
    const task = await inStatus(status);
    const eventsBefore = await eventsOf(task.id);
    const { result, changes } = await publishedBy(() => apply[name](task));
    if (allowed) {
      const version = task.version + 1;
      expect(result).toMatchObject({ id: task.id, status: to, version });
      expect(await current(task.id)).toMatchObject({ status: to, version });
      // Its audit row, committed with it; and exactly one message, once committed.
      expect(await eventsOf(task.id)).toEqual([...eventsBefore, expect.objectContaining({ status: to, version })]);
      expect(changes).toEqual([message(result!)]);
    } else {
      expect(result).toBeNull();
      expect(await current(task.id)).toMatchObject({ status, version: task.version });
      expect(await eventsOf(task.id)).toEqual(eventsBefore);
      expect(changes).toEqual([]);
    }
  });

  it('a new task is published once: CREATED, or QUEUED when created to run', async () => {
    for (const run of [false, true]) {
      const { result, changes } = await publishedBy(async () =>
        (await store.insertTask({ ownerId: OWNER, jobDefinition: 'IMAGE_RESIZE', params: PARAMS, source: image(), run, limit: NO_CAP }))!,
      );
      expect(result).toMatchObject({ status: run ? 'QUEUED' : 'CREATED', params: PARAMS });
      expect(changes).toEqual([message(result)]);
    }
  });

  it('progress is a change (published, version moves) but no transition (no event); it only grows', async () => {
    const task = await inStatus('RUNNING');
    const events = await eventsOf(task.id);
    const { result, changes } = await publishedBy(() => store.setProgress(task.id, task.attempts, 0.5, LEASE_MS));
    expect(result).toMatchObject({ status: 'RUNNING', progress: 0.5, version: task.version + 1 });
    expect(changes).toEqual([message(result!)]);
    expect(await publishedBy(() => store.setProgress(task.id, task.attempts, 0.4, LEASE_MS))).toEqual({ result: null, changes: [] });
    expect(await eventsOf(task.id)).toEqual(events);
  });
});

describe('fencing by attempt', () => {
  it('a stale delivery (its task retried and claimed again since) writes nothing: no DONE, no result image, no event, no message', async () => {
    const task = await runningAt(2);
    const stale = task.attempts - 1;
    const before = await current(task.id);
    const events = await eventsOf(task.id);
    const result = image();
    const { changes } = await publishedBy(async () => {
      expect(await store.complete(task.id, stale, result)).toBeNull();
      expect(await store.setProgress(task.id, stale, 0.7, LEASE_MS)).toBeNull();
      expect(await store.renewLease(task.id, stale, LEASE_MS)).toBe(false);
      expect(await store.retryLater(task.id, stale, 'a blip', 0)).toBeNull();
      expect(await store.retryOrFail(task.id, stale, 'a blip')).toBeNull();
      expect(await store.handBack(task.id, stale)).toBeNull();
      expect(await store.waitForStore(task.id, stale, 'the store is down', 0)).toBeNull();
      expect(await store.fail(task.id, 'it broke', stale)).toBeNull();
    });
    expect(changes).toEqual([]);
    expect(await current(task.id)).toEqual(before);
    expect(await eventsOf(task.id)).toEqual(events);
    expect(await sql(`SELECT id FROM "Image" WHERE id = $1`, [result.id])).toEqual([]);
    // The delivery that holds the task completes it, with its result image.
    expect(await store.complete(task.id, task.attempts, result)).toMatchObject({ status: 'DONE', resultImageId: result.id });
    expect(await sql(`SELECT "storageKey" FROM "Image" WHERE id = $1`, [result.id])).toEqual([{ storageKey: result.storageKey }]);
  });

  it('a stale delivery cannot fail a task that was queued again since (the lost worker\'s task, retried by the reconciler)', async () => {
    const task = await runningAt(1);
    const retried = (await store.retryOrFail(task.id, task.attempts, 'the worker was lost'))!;
    expect(retried).toMatchObject({ status: 'QUEUED', attempts: task.attempts });
    // The old delivery wakes up and its job fails: the task is not its any more.
    expect(await publishedBy(() => store.fail(task.id, 'it broke', task.attempts))).toEqual({ result: null, changes: [] });
    expect(await publishedBy(() => store.retryOrFail(task.id, task.attempts, 'a blip'))).toEqual({ result: null, changes: [] });
    expect(await current(task.id)).toMatchObject({ status: 'QUEUED', version: retried.version });
  });

  it('a delivery that lost its task to a delete cannot complete it (no result image either)', async () => {
    const task = await inStatus('RUNNING');
    await store.markDeleted(task.id, OWNER);
    const result = image();
    expect(await publishedBy(() => store.complete(task.id, task.attempts, result))).toEqual({ result: null, changes: [] });
    expect(await current(task.id)).toMatchObject({ status: 'DELETED', resultImageId: null });
    expect(await sql(`SELECT id FROM "Image" WHERE id = $1`, [result.id])).toEqual([]);
  });

  it('a hand-back does not count the delivery: the next claim has the same attempt number', async () => {
    const task = await runningAt(2);
    expect(await store.handBack(task.id, task.attempts)).toMatchObject({ status: 'QUEUED', attempts: 1, runAfter: null });
    expect(await claim(task.id)).toMatchObject({ status: 'RUNNING', attempts: 2 });
  });

  it('waiting for the blob store does not count the delivery either, and waits out its backoff', async () => {
    const task = await runningAt(2);
    const waiting = (await store.waitForStore(task.id, task.attempts, 'transient error: blob store unavailable', 60_000))!;
    expect(waiting).toMatchObject({ status: 'QUEUED', attempts: 1, progress: 0, leaseUntil: null });
    expect(waiting.runAfter!.getTime()).toBeGreaterThan(waiting.updatedAt.getTime());
    expect((await eventsOf(task.id)).at(-1)).toEqual({
      status: 'QUEUED',
      version: waiting.version,
      message: 'retrying after: transient error: blob store unavailable (the blob store is down: this delivery is not counted)',
    });
    expect(await store.claim(task.id, LEASE_MS, NO_CAP)).toBeNull(); // not before its backoff
    await sql(`UPDATE "Task" SET "runAfter" = now() WHERE id = $1`, [task.id]);
    expect(await claim(task.id)).toMatchObject({ status: 'RUNNING', attempts: 2 });
  });
});

describe('retryOrFail', () => {
  it(`below MAX_ATTEMPTS (${MAX_ATTEMPTS}): queued again after a backoff, the delivery counted`, async () => {
    for (let attempt = 1; attempt < MAX_ATTEMPTS; attempt++) {
      const task = await runningAt(attempt);
      const { result, changes } = await publishedBy(() => store.retryOrFail(task.id, task.attempts, 'a blip'));
      expect(result).toMatchObject({ status: 'QUEUED', attempts: attempt, progress: 0, leaseUntil: null, error: null });
      expect(result!.runAfter!.getTime()).toBeGreaterThan(result!.updatedAt.getTime());
      expect(changes).toEqual([message(result!)]);
      expect((await eventsOf(task.id)).at(-1)).toEqual({ status: 'QUEUED', version: result!.version, message: 'retrying after: a blip' });
    }
  });

  it(`at MAX_ATTEMPTS (${MAX_ATTEMPTS}): FAILED, saying so`, async () => {
    const task = await runningAt(MAX_ATTEMPTS);
    const { result, changes } = await publishedBy(() => store.retryOrFail(task.id, task.attempts, 'a blip'));
    const error = `gave up after ${MAX_ATTEMPTS} attempts: a blip`;
    expect(result).toMatchObject({ status: 'FAILED', attempts: MAX_ATTEMPTS, error });
    expect(changes).toEqual([message(result!)]);
    expect((await eventsOf(task.id)).at(-1)).toEqual({ status: 'FAILED', version: result!.version, message: error });
  });
});

describe('the reconciler', () => {
  // Each sweep looks at every task: none of the earlier tests' open tasks may count.
  beforeEach(async () => {
    await sql(`UPDATE "Task" SET status = 'FAILED', "leaseUntil" = NULL WHERE status IN ('QUEUED', 'RUNNING')`);
  });

  it('enqueues a due QUEUED task that has no job (its enqueue was lost), not one in its retry backoff', async () => {
    const lost = await inStatus('QUEUED');
    // Queued a minute ago, past the grace its producer has to enqueue it.
    await sql(`UPDATE "Task" SET "updatedAt" = now() - interval '1 minute' WHERE id = $1`, [lost.id]);
    const backingOff = await runningAt(1);
    await store.retryLater(backingOff.id, backingOff.attempts, 'a blip', 600_000);
    const ids = [lost.id, backingOff.id];
    expect(await queue.jobsPresent(ids)).toEqual(new Set());
    // A stray job of a task in its backoff is dropped by the claim (the sweep enqueues it once due).
    expect(await store.claim(backingOff.id, LEASE_MS, NO_CAP)).toBeNull();
    const { result: report, changes } = await publishedBy(() => reconciler.sweep());
    expect(report).toEqual({ retried: 0, failed: 0, enqueued: 1, woken: 0 });
    expect(await queue.jobsPresent(ids)).toEqual(new Set([lost.id]));
    expect(changes).toEqual([]); // enqueueing is no change of the task
    // Its job is there now: the next sweep leaves it be.
    expect(await reconciler.sweep()).toEqual({ retried: 0, failed: 0, enqueued: 0, woken: 0 });
  });

  it('retries a task whose worker was lost (lease expired), or fails it at MAX_ATTEMPTS; each published once', async () => {
    const retried = await runningAt(1);
    const failed = await runningAt(MAX_ATTEMPTS);
    await sql(`UPDATE "Task" SET "leaseUntil" = now() - interval '1 second' WHERE id = ANY($1::uuid[])`, [[retried.id, failed.id]]);
    const { result: report, changes } = await publishedBy(() => reconciler.sweep());
    // (The retried one may be enqueued by the same sweep if its short backoff is over by then.)
    expect(report).toMatchObject({ retried: 1, failed: 1, woken: 0 });
    const reason = 'the worker was lost (crashed, killed or stalled)';
    const after = { retried: await store.findTask(retried.id), failed: await store.findTask(failed.id) };
    expect(after.retried).toMatchObject({ status: 'QUEUED', attempts: 1 });
    expect(after.failed).toMatchObject({ status: 'FAILED', error: `gave up after ${MAX_ATTEMPTS} attempts: ${reason}` });
    expect((await eventsOf(retried.id)).at(-1)).toMatchObject({ status: 'QUEUED', message: `retrying after: ${reason}` });
    expect(changes.sort((a, b) => a.status.localeCompare(b.status))).toEqual([message(after.failed!), message(after.retried!)]);
  });
});

describe('watchTask', () => {
  it('yields the current state first, then newer states in version order, and ends after the final one', async () => {
    const task = await inStatus('QUEUED');
    const seen: TaskRow[] = [];
    const stream = await watch.watchTask(caller, task.id);
    const reading = (async () => {
      for await (const state of stream) seen.push(state);
    })();
    await until(async () => seen.length, (n) => n >= 1, 10_000, 5);
    const running = await claim(task.id);
    await store.setProgress(task.id, running.attempts, 0.5, LEASE_MS);
    const done = (await store.complete(task.id, running.attempts, image()))!;
    await reading; // the stream ends by itself
    expect(seen[0]).toMatchObject({ id: task.id, status: 'QUEUED', version: task.version });
    expect(seen.at(-1)).toMatchObject({ status: 'DONE', version: done.version });
    const versions = seen.map((state) => state.version);
    expect(versions).toEqual([...new Set(versions)].sort((a, b) => a - b));
  });

  it('a transition whose publish fails (Redis cut) still commits and returns; the watcher gets the final state once Redis is back', async () => {
    const task = await inStatus('RUNNING');
    const seen: TaskRow[] = [];
    const stream = await watch.watchTask(caller, task.id);
    const reading = (async () => {
      for await (const state of stream) seen.push(state);
    })();
    await until(async () => seen.length, (n) => n >= 1, 10_000, 5);
    proxy.cut();
    try {
      const done = await store.complete(task.id, task.attempts, image());
      expect(done).toMatchObject({ status: 'DONE' });
      expect(await current(task.id)).toMatchObject({ status: 'DONE', version: done!.version });
    } finally {
      proxy.unblock();
    }
    await reading; // re-read after the subscriber's reconnect, whatever became of the message
    expect(seen.map((state) => state.status)).toEqual(['RUNNING', 'DONE']);
  });
});
