// Reliability, part 1: workers that die, hang or run too long. Real `npm start` processes
// (supervisor, API, two workers) with short leases so recovery happens within the test;
// faults are injected from outside (SIGKILL / SIGSTOP by pid), never by test hooks.
// After each scenario: every task terminal, completed exactly once, nothing lost.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { client, until, type Client } from './helpers/client.ts';
import { childPids, isAlive, orphanImages, taskFacts, workerOf, type TaskFacts } from './helpers/faults.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { startService, type Service } from './helpers/service.ts';
import { submit } from './helpers/tasks.ts';

// Slow by design (each scenario waits out leases and real encodes); generous for a busy machine.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });

const ENV = { WORKERS: '2', LEASE_MS: '2000', RECONCILE_INTERVAL_MS: '250', LOG_LEVEL: 'info' };
// An AVIF encode of a noisy 480x480 photo: seconds of work, long enough to be hit mid-job.
const SLOW = { width: 480, format: 'AVIF' };
const QUICK = { width: 16 };

let infra: TestInfra;
let service: Service;
/** The JOB_TIMEOUT_MS test's deployment: its own database, started while the others run. */
let timedInfra: TestInfra | undefined;
let timedStart: Promise<Service> | undefined;
let alice: Client;
let slowImage: Buffer;
let quickImage: Buffer;

beforeAll(async () => {
  [infra, timedInfra] = await Promise.all([createInfra('recovery'), createInfra('recovery_timeout')]);
  [service, slowImage, quickImage] = await Promise.all([startService(infra, ENV), photo(480, 480), photo(64, 64)]);
  alice = client(service.url, await infra.createKey('alice'));
  // Its start (seconds of CPU) overlaps the waits of the tests before it (leases, stall checks).
  timedStart = startService(timedInfra, { ...ENV, WORKERS: '1', JOB_TIMEOUT_MS: '1000' });
  timedStart.catch(() => {}); // its test reports the failure
});

afterAll(async () => {
  await service?.stop();
  await (await timedStart?.catch(() => undefined))?.stop();
  await infra?.dispose();
  await timedInfra?.dispose();
});

const sql = (text: string, params?: unknown[]) => infra.sql(text, params);

/** Waits until every task (of deployment `on`) is DONE or FAILED, then checks the invariants and returns the facts. */
async function settledExactlyOnce(ids: string[], { on = infra, timeoutMs = 150_000 }: { on?: TestInfra; timeoutMs?: number } = {}): Promise<Map<string, TaskFacts>> {
  const facts = await until(
    () => taskFacts(on.sql, ids),
    (map) => ids.every((id) => ['DONE', 'FAILED'].includes(map.get(id)?.status ?? '')),
    timeoutMs,
    200,
  );
  for (const id of ids) {
    const task = facts.get(id)!;
    expect(task, `task ${id} lost`).toBeDefined();
    expect(task.terminalEvents, `task ${id} completed more than once: ${task.events}`).toBe(1);
    if (task.status === 'DONE') expect(task.resultImageId).not.toBeNull();
    else expect(task.error).toBeTruthy();
  }
  expect(await orphanImages(on.sql)).toBe(0);
  return facts;
}

/** Waits for delivery `attempt` of `taskId` to start on some worker; returns that worker's pid. */
async function startedOn(taskId: string, attempt: number): Promise<number> {
  return until(
    async () => workerOf(service.output(), taskId, attempt),
    (pid) => pid !== null,
    120_000,
    20,
  ) as Promise<number>;
}

describe('a worker killed mid-job', () => {
  it('has its task picked up again and completed once (kill -9)', async () => {
    const id = await submit(alice, slowImage, SLOW);
    const victim = await startedOn(id, 1);
    process.kill(victim, 'SIGKILL');
    const facts = await settledExactlyOnce([id]);
    const task = facts.get(id)!;
    expect(task.status).toBe('DONE');
    expect(task.attempts).toBe(2);
    expect(task.events).toContain('QUEUED: retrying after: the worker was lost (crashed, killed or stalled)');
    expect(workerOf(service.output(), id, 2)).not.toBe(victim);
    // The supervisor replaced the dead worker.
    await until(async () => childPids(service.child.pid!, 'tasklane-worker'), (pids) => pids.length === 2 && !pids.includes(victim));
  });

  it('fails a poison pill that kills its worker every time after MAX_ATTEMPTS (3), the others unaffected', async () => {
    const poison = await submit(alice, slowImage, SLOW);
    const others = await Promise.all([1, 2, 3, 4].map(() => submit(alice, quickImage, QUICK)));
    for (let attempt = 1; attempt <= 3; attempt++) process.kill(await startedOn(poison, attempt), 'SIGKILL');
    const facts = await settledExactlyOnce([poison, ...others]);
    expect(facts.get(poison)).toMatchObject({
      status: 'FAILED',
      attempts: 3,
      error: 'gave up after 3 attempts: the worker was lost (crashed, killed or stalled)',
    });
    for (const id of others) expect(facts.get(id)).toMatchObject({ status: 'DONE', attempts: 1 });
  });
});

describe('a job delivered twice concurrently', () => {
  it('keeps only the result of the delivery that owns the task; the other writes nothing', async () => {
    const id = await submit(alice, slowImage, SLOW);
    // Freeze the first worker mid-job: its lease runs out, the task is delivered again.
    const frozen = await startedOn(id, 1);
    process.kill(frozen, 'SIGSTOP');
    try {
      const second = await startedOn(id, 2);
      expect(second).not.toBe(frozen);
      await until(() => taskFacts(sql, [id]), (map) => map.get(id)?.status === 'DONE', 150_000, 200);
    } finally {
      process.kill(frozen, 'SIGCONT');
    }
    // The first delivery wakes up, still believing it runs the task: it must write nothing.
    await until(
      async () => service.output(),
      (out) => new RegExp(`"taskId":"${id}","attempt":1,"msg":"job (stopped|result discarded)`).test(out),
      60_000,
    );
    const facts = await settledExactlyOnce([id]);
    expect(facts.get(id)).toMatchObject({ status: 'DONE', attempts: 2 });
    const [{ n }] = await sql(`SELECT count(*)::int AS n FROM "Image" WHERE "ownerId" = 'alice' AND id = $1`, [facts.get(id)!.resultImageId]);
    expect(n).toBe(1);
  });
});

describe('a job longer than JOB_TIMEOUT_MS', () => {
  let timed: Service;
  let bob: Client;

  beforeAll(async () => {
    // A second deployment, with a short timeout and one worker; the first is not needed any more.
    await service.stop();
    timed = await timedStart!;
    bob = client(timed.url, await timedInfra!.createKey('bob'));
  });

  it('is stopped for real, FAILED as timed out without retry, and the worker takes the next task', async () => {
    // Far more than a second of AVIF encoding (a 1200x1200 noisy photo).
    const id = await submit(bob, await photo(1200, 1200), { width: 1200, format: 'AVIF', quality: 60 });
    const facts = await settledExactlyOnce([id], { on: timedInfra });
    expect(facts.get(id)).toMatchObject({
      status: 'FAILED',
      attempts: 1,
      error: 'timed out after 1000 ms (JOB_TIMEOUT_MS); the work was stopped',
    });
    // The executor process doing the encode was killed, not merely abandoned.
    const [, pid] = timed.output().match(/"executorPid":(\d+),"why":"job timed out"/)!;
    await until(async () => isAlive(Number(pid)), (alive) => !alive, 10_000); // reaped by its worker
    // And the (only) worker is free for the next task right away.
    const next = await submit(bob, quickImage, QUICK);
    expect((await settledExactlyOnce([next], { on: timedInfra })).get(next)).toMatchObject({ status: 'DONE', attempts: 1 });
  });
});
