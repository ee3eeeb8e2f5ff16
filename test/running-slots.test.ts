// MAX_RUNNING_TASKS_PER_KEY at the mechanism: the claim and the wake-up statements against a
// real PostgreSQL, many at once on separate connections (as separate worker processes would),
// and the reconciler's part. End to end with real workers: test/limits.e2e.test.ts.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { migrate } from '../src/migrate.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { maxRunningAtOnce } from './helpers/running.ts';

const CAP = 3;
const LEASE_MS = 60_000;

let infra: TestInfra;
let store: typeof import('../src/tasks/store.ts');
let slots: typeof import('../src/tasks/running-slots.ts');
let reconciler: typeof import('../src/tasks/reconciler.ts');
let queue: typeof import('../src/tasks/queue.ts');
let closeAll: () => Promise<void>;

beforeAll(async () => {
  infra = await createInfra('slots');
  await migrate(infra.databaseUrl);
  // The modules read their configuration when first imported.
  Object.assign(process.env, {
    ...infra.storageEnv,
    DATABASE_URL: infra.databaseUrl,
    REDIS_PREFIX: infra.redisPrefix,
    MAX_RUNNING_TASKS_PER_KEY: String(CAP),
    LOG_LEVEL: 'warn',
  });
  store = await import('../src/tasks/store.ts');
  slots = await import('../src/tasks/running-slots.ts');
  reconciler = await import('../src/tasks/reconciler.ts');
  queue = await import('../src/tasks/queue.ts');
  const [{ prisma }, { closeRedis }] = await Promise.all([import('../src/db.ts'), import('../src/redis.ts')]);
  closeAll = async () => {
    await closeRedis();
    await prisma.$disconnect();
  };
});

afterAll(async () => {
  await closeAll?.();
  await infra?.dispose();
});

const sql = (text: string, params?: unknown[]) => infra.sql(text, params);

// Each test starts with no task waiting its turn: whether the cap binds depends on other keys'
// QUEUED tasks, so one test's leftovers must not decide another's.
beforeEach(async () => {
  await sql(`UPDATE "Task" SET status = 'FAILED', "waitingForSlot" = false WHERE status = 'QUEUED'`);
});

/** `n` QUEUED tasks of `owner`, queued one millisecond apart (oldest first in the result). */
async function queued(owner: string, n: number): Promise<string[]> {
  const rows = await sql(
    `INSERT INTO "Task" ("id", "status", "jobDefinition", "params", "ownerId", "version", "updatedAt")
     SELECT gen_random_uuid(), 'QUEUED', 'IMAGE_RESIZE', '{}', $1, 2, now() - make_interval(secs => (60 + $2 - i) / 1000.0)
     FROM generate_series(1, $2) AS i ORDER BY i RETURNING id`,
    [owner, n],
  );
  return rows.map((row) => row.id as string);
}

const owner = () => `key-${randomBytes(3).toString('hex')}`;

/**
 * Another key's task waiting its turn (due, QUEUED): the cap binds only while there is one.
 * Returns a function that removes it again.
 */
async function competitor(): Promise<() => Promise<void>> {
  const [id] = await queued(owner(), 1);
  return async () => void (await sql(`DELETE FROM "Task" WHERE id = $1`, [id]));
}

async function statusOf(ids: string[]) {
  const rows = await sql(`SELECT id, status, attempts, "waitingForSlot" FROM "Task" WHERE id = ANY($1::uuid[])`, [ids]);
  return new Map(rows.map((row) => [row.id as string, row as { status: string; attempts: number; waitingForSlot: boolean }]));
}

describe('claim', () => {
  it(`lets one key have at most MAX_RUNNING_TASKS_PER_KEY (${CAP}) RUNNING, however many claim at once; the rest wait without spending an attempt`, async () => {
    const alice = owner();
    const ids = await queued(alice, 20);
    const removeCompetitor = await competitor();
    // Twenty claims at once, over the pool's ten connections.
    const outcomes = await Promise.all(ids.map((id) => store.claim(id, LEASE_MS, CAP)));
    await removeCompetitor();
    const claimed = outcomes.filter((o) => o !== null && o !== 'waiting');
    expect(claimed).toHaveLength(CAP);
    expect(outcomes.filter((o) => o === 'waiting')).toHaveLength(20 - CAP);
    const after = await statusOf(ids);
    const running = [...after.values()].filter((t) => t.status === 'RUNNING');
    const waiting = [...after.values()].filter((t) => t.status === 'QUEUED');
    expect(running).toHaveLength(CAP);
    expect(running.every((t) => t.attempts === 1 && !t.waitingForSlot)).toBe(true);
    expect(waiting).toHaveLength(20 - CAP);
    expect(waiting.every((t) => t.attempts === 0 && t.waitingForSlot)).toBe(true);
    // Waiting is no transition: no event, no new version.
    const [{ events }] = await sql(`SELECT count(*)::int AS events FROM "TaskEvent" WHERE "taskId" = ANY($1::uuid[])`, [ids]);
    expect(events).toBe(CAP);
    // Another key is not held up by this one.
    const [bobs] = await queued(owner(), 1);
    expect(await store.claim(bobs, LEASE_MS, CAP)).toMatchObject({ task: { id: bobs, status: 'RUNNING' } });
  });

  it('keeps waiting tasks out of the reconciler\'s due list and the liveness check (no job, on purpose)', async () => {
    const alice = owner();
    const ids = await queued(alice, CAP + 2);
    const removeCompetitor = await competitor();
    for (const id of ids) await store.claim(id, LEASE_MS, CAP);
    const waiting = ids.slice(CAP);
    expect([...(await statusOf(waiting)).values()].map((t) => t.status)).toEqual(waiting.map(() => 'QUEUED'));
    // QUEUED without a job, queued over a minute ago: any other such task would be due.
    const due = new Set((await store.findDueQueued(0, 10_000)).map((row) => row.id));
    for (const id of waiting) expect(due.has(id)).toBe(false);
    // A sweep (while the competitor still waits) enqueues none of the waiting ones.
    await reconciler.sweep();
    expect(await queue.jobsPresent(waiting)).toEqual(new Set());
    await removeCompetitor();
    // Nor are they "due" to the workers' liveness check: an idle worker is right to leave them
    // (every QUEUED task now is waiting for a slot).
    expect(await store.oldestDueQueuedMs()).toBe(0);
    // Nobody else waits now: the next wake-up takes them all off waiting (the cap no longer binds).
    expect(await slots.wakeWaiting(alice)).toBe(waiting.length);
    expect(await queue.jobsPresent(waiting)).toEqual(new Set(waiting));
    for (const id of waiting) expect(await store.claim(id, LEASE_MS, CAP)).toMatchObject({ task: { status: 'RUNNING' } });
  });

  it('is work-conserving: a key alone claims past the cap, since nobody else waits', async () => {
    const alice = owner();
    const ids = await queued(alice, CAP + 2);
    const outcomes = await Promise.all(ids.map((id) => store.claim(id, LEASE_MS, CAP)));
    expect(outcomes.every((o) => o !== null && o !== 'waiting')).toBe(true);
    // Once another key's task waits, the next claim over the cap yields to it.
    const removeCompetitor = await competitor();
    const [late] = await queued(alice, 1);
    expect(await store.claim(late, LEASE_MS, CAP)).toBe('waiting');
    await removeCompetitor();
  });
});

describe('waking waiting tasks', () => {
  it('a freed slot wakes exactly one waiting task, the oldest, and enqueues it; it then runs', async () => {
    const alice = owner();
    const ids = await queued(alice, CAP + 3);
    const removeCompetitor = await competitor();
    for (const id of ids) await store.claim(id, LEASE_MS, CAP);
    expect(await slots.wakeWaiting(alice)).toBe(0); // no slot free
    await store.fail(ids[0], 'done with it', 1);
    expect(await slots.wakeWaiting(alice)).toBe(1);
    const after = await statusOf(ids);
    expect(after.get(ids[CAP])!.waitingForSlot).toBe(false); // the oldest waiting one
    expect([...after.values()].filter((t) => t.waitingForSlot)).toHaveLength(2);
    expect(await queue.jobsPresent([ids[CAP]])).toEqual(new Set([ids[CAP]]));
    // Woken but not yet taken by a worker, it holds the free slot: nothing more wakes.
    expect(await slots.wakeWaiting(alice)).toBe(0);
    expect(await store.claim(ids[CAP], LEASE_MS, CAP)).toMatchObject({ task: { status: 'RUNNING', attempts: 1 } });
    await removeCompetitor();
  });

  it('a task waiting out a retry backoff holds no slot', async () => {
    const alice = owner();
    const ids = await queued(alice, CAP + 1);
    const removeCompetitor = await competitor();
    for (const id of ids) await store.claim(id, LEASE_MS, CAP);
    await store.retryLater(ids[0], 1, 'transient', 60_000);
    expect(await slots.wakeWaiting(alice)).toBe(1);
    await removeCompetitor();
  });

  it('the reconciler wakes tasks whose slot freed with no worker to say so (a running task deleted)', async () => {
    const alice = owner();
    const ids = await queued(alice, CAP + 1);
    const removeCompetitor = await competitor();
    for (const id of ids) await store.claim(id, LEASE_MS, CAP);
    await store.markDeleted(ids[0], alice);
    // The competitor is still waiting (and, being due without a job, gets enqueued too).
    const report = await reconciler.sweep();
    await removeCompetitor();
    expect(report?.woken).toBe(1);
    expect((await statusOf([ids[CAP]])).get(ids[CAP])!.waitingForSlot).toBe(false);
    expect(await queue.jobsPresent([ids[CAP]])).toEqual(new Set([ids[CAP]]));
  });

  it('under concurrent claims, ends and wake-ups, never exceeds the cap and strands no task', async () => {
    const alice = owner();
    const ids = await queued(alice, 40);
    // Another key's task waits throughout (nobody takes it), so the cap binds all along.
    const removeCompetitor = await competitor();
    // Eight "workers" on the pool's connections, taking jobs from an in-memory queue (Redis'
    // part): claim; if claimed, end the task and wake the owner's waiting tasks, which go back
    // on the queue; if over the cap, drop the job, as a worker does.
    const jobs = [...ids];
    let deliveries = 0;
    const worker = async () => {
      for (;;) {
        const id = jobs.shift();
        if (!id) {
          const [{ open }] = await sql(`SELECT count(*)::int AS open FROM "Task" WHERE "ownerId" = $1 AND status IN ('QUEUED', 'RUNNING')`, [alice]);
          if (open === 0) return;
          // Only running tasks of other workers are left: their ends will wake the rest.
          await new Promise((r) => setImmediate(r));
          continue;
        }
        deliveries++;
        const claim = await store.claim(id, LEASE_MS, CAP);
        if (claim === null || claim === 'waiting') continue;
        await store.fail(id, 'done', claim.task.attempts);
        jobs.push(...(await store.wakeWaiting(alice, CAP)));
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    await removeCompetitor();
    const after = await statusOf(ids);
    expect([...after.values()].every((t) => t.status === 'FAILED' && t.attempts === 1)).toBe(true);
    expect(await maxRunningAtOnce(sql, alice)).toBe(CAP);
    // Each task is delivered at most a few times (first delivery, and after each wake), not spun on.
    expect(deliveries).toBeLessThan(ids.length * 3);
  });
});
