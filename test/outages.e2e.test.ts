// Reliability, part 2: Redis and PostgreSQL misbehaving, and shutdown. One real `npm start`
// deployment on a private redis-server (so it can be killed and restarted: "Redis lost
// everything") and behind a TCP proxy to PostgreSQL (so PostgreSQL can "go down" for this
// deployment only). After each scenario: every task terminal, completed exactly once,
// nothing lost, nothing orphaned.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { graphql } from './gql/index.ts';
import { client, until, type Client } from './helpers/client.ts';
import {
  backendPids,
  flushPrefix,
  killRedisClients,
  killRedisClientsNamed,
  redisClientNames,
  taskFacts,
  terminateBackendPids,
  terminateBackends,
} from './helpers/faults.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { privateRedis, tcpProxy, type PrivateRedis, type TcpProxy } from './helpers/outage.ts';
import { startService, type Service } from './helpers/service.ts';
import { expectAllDoneOnce as expectAllDoneOnceIn } from './helpers/settled.ts';
import { submit } from './helpers/tasks.ts';

// Slow by design (each scenario waits out leases and real encodes); generous for a busy machine.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });

const TaskStatusQuery = graphql(`
  query TaskStatusDuringOutage($id: ID!) {
    task(id: $id) { __typename ... on Task { id status } }
  }
`);

// About a second of AVIF encoding per task on an idle machine (more on a busy one): long enough
// to be caught running, short enough for a scenario to finish in seconds.
const MEDIUM = { width: 512, format: 'AVIF' };
// About four seconds of AVIF encoding on an idle machine: far longer than SHUTDOWN_GRACE_MS below,
// so a worker stopped while running one must hand it back (an idle CI machine finished MEDIUM
// tasks within the grace period, and nothing was handed back).
const HEAVY = { width: 1024, format: 'AVIF' };

let infra: TestInfra;
let redis: PrivateRedis;
let pgProxy: TcpProxy;
let env: Record<string, string>;
let service: Service;
let alice: Client;
let image: Buffer;

beforeAll(async () => {
  [infra, redis, image] = await Promise.all([createInfra('outages'), privateRedis(), photo(1024, 1024)]);
  pgProxy = await tcpProxy(Number(new URL(infra.databaseUrl).port || 5432));
  const viaProxy = new URL(infra.databaseUrl);
  viaProxy.port = String(pgProxy.port);
  env = {
    DATABASE_URL: viaProxy.toString(),
    REDIS_URL: redis.url,
    WORKERS: '2',
    LEASE_MS: '2000',
    RECONCILE_INTERVAL_MS: '250',
    SHUTDOWN_GRACE_MS: '1000',
  };
  service = await startService(infra, env);
  alice = client(service.url, await infra.createKey('alice'));
});

afterAll(async () => {
  await service?.stop();
  await pgProxy?.close();
  await redis?.close();
  await infra?.dispose();
});

const sql = (text: string, params?: unknown[]) => infra.sql(text, params);

async function submitMany(n: number, resize: Record<string, unknown> = MEDIUM): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(await submit(alice, image, resize));
  return ids;
}

async function statuses(ids: string[]): Promise<string[]> {
  return [...(await taskFacts(sql, ids)).values()].map((task) => task.status);
}

/** Waits until at least one of `ids` runs while another still waits its turn. */
async function someRunningSomeQueued(ids: string[]) {
  await until(() => statuses(ids), (s) => s.includes('RUNNING') && s.includes('QUEUED'), 120_000, 50);
}

const expectAllDoneOnce = (ids: string[]) => expectAllDoneOnceIn(sql, ids);

/** Whether `names` holds each of `wanted` at least as often as `wanted` does. */
function holdsAll(names: string[], wanted: string[]): boolean {
  const left = new Map<string, number>();
  for (const name of names) left.set(name, (left.get(name) ?? 0) + 1);
  return wanted.every((name) => {
    const n = left.get(name) ?? 0;
    left.set(name, n - 1);
    return n > 0;
  });
}

async function readiness(): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${service.url}/ready`);
  return { status: response.status, body: await response.json() };
}

describe('Redis', () => {
  it('loses every key of the deployment while tasks are queued and running: all still complete once', async () => {
    const ids = await submitMany(4);
    await someRunningSomeQueued(ids);
    expect(await flushPrefix(redis.client, infra.redisPrefix)).toBeGreaterThan(0);
    await expectAllDoneOnce(ids);
  });

  it('has every connection killed (CLIENT KILL) mid-run, twice: the processes reconnect, tasks complete once', async () => {
    const ids = await submitMany(4);
    await someRunningSomeQueued(ids);
    const killed = await killRedisClientsNamed(redis.client, infra.redisPrefix);
    expect(killed.length).toBeGreaterThanOrEqual(5);
    // The second time, once the processes have reconnected: every connection killed is back.
    await until(() => redisClientNames(redis.client, infra.redisPrefix), (names) => holdsAll(names, killed), 30_000);
    await killRedisClients(redis.client, infra.redisPrefix);
    await expectAllDoneOnce(ids);
    expect((await readiness()).status).toBe(200);
  });

  it('restarts empty (scripts and all) mid-run: /ready says so, a task accepted meanwhile is enqueued later', async () => {
    const before = await submitMany(4);
    await someRunningSomeQueued(before);
    await redis.kill();
    const down = await until(readiness, (r) => r.status === 503, 30_000);
    expect(down.body.ready).toBe(false);
    expect(down.body.redis).not.toBe('ok');
    // PostgreSQL is the truth: accepting work does not need Redis.
    const during = await submit(alice, image, MEDIUM);
    // Accepted, and its enqueue failed (the API tried before it answered): only the reconciler can enqueue it now.
    await service.waitFor(new RegExp(`"taskId":"${during}"[^\\n]*enqueue failed`), 10_000);
    await redis.start();
    await expectAllDoneOnce([...before, during]);
    await until(readiness, (r) => r.status === 200, 30_000);
  });
});

describe('PostgreSQL', () => {
  it('has every backend terminated mid-run, twice: the processes reconnect, tasks complete once', async () => {
    const ids = await submitMany(4);
    await someRunningSomeQueued(ids);
    const terminated = await terminateBackendPids(infra.databaseUrl);
    expect(terminated.length).toBeGreaterThan(0);
    // The second time, once the processes have reconnected: a backend the first round did not end.
    await until(() => backendPids(infra.databaseUrl), (pids) => pids.some((pid) => !terminated.includes(pid)), 30_000);
    await terminateBackends(infra.databaseUrl);
    await expectAllDoneOnce(ids);
    expect((await readiness()).status).toBe(200);
  });

  it('goes down: /ready is 503, requests fail fast with SERVICE_UNAVAILABLE, nothing accepted before is lost', async () => {
    const ids = await submitMany(4);
    await someRunningSomeQueued(ids);
    await pgProxy.down();
    try {
      const down = await until(readiness, (r) => r.status === 503, 30_000);
      expect(down.body.ready).toBe(false);
      expect(down.body.postgres).not.toBe('ok');
      // A mutation and a query answer (not hang) with a clear, typed error.
      const failed = await Promise.race([
        submit(alice, image, MEDIUM).then(
          () => 'accepted',
          (error: Error) => error.message,
        ),
        new Promise<string>((resolve) => setTimeout(() => resolve('no answer within 20 s'), 20_000)),
      ]);
      expect(failed).toMatch(/HTTP 503.*"code":"SERVICE_UNAVAILABLE"/);
      expect(failed).toMatch(/the database is unavailable/);
      const query = await alice.request(TaskStatusQuery, { id: ids[0] });
      expect(query.status).toBe(503);
      expect(query.errors?.[0].extensions?.code).toBe('SERVICE_UNAVAILABLE');
    } finally {
      await pgProxy.up();
    }
    await until(readiness, (r) => r.status === 200, 30_000);
    const after = await submit(alice, image, MEDIUM);
    await expectAllDoneOnce([...ids, after]);
  });
});

describe('SIGTERM', () => {
  it('stops npm start quickly with tasks running, hands them back, and a restart completes them once', async () => {
    // The two heavy tasks go first (FIFO) and run on the two workers while the others wait.
    const heavy = await submitMany(2, HEAVY);
    const ids = [...heavy, ...(await submitMany(4))];
    await until(() => statuses(heavy), (s) => s.every((x) => x === 'RUNNING'), 120_000, 50);
    const stoppedAt = Date.now();
    const code = await service.stop('SIGTERM', 30_000); // SIGKILLed (code null) past 30 s
    expect(code).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(30_000);
    const handedBack = [...(await taskFacts(sql, ids)).values()].filter((t) =>
      t.events.includes('QUEUED: handed back by a worker shutting down'),
    );
    expect(handedBack.map((task) => task.id).sort()).toEqual(expect.arrayContaining([...heavy].sort()));
    for (const task of handedBack) expect(task.status).toBe('QUEUED');
    expect(await statuses(ids)).not.toContain('RUNNING'); // nothing left behind as RUNNING

    service = await startService(infra, env);
    alice = client(service.url, alice.key);
    const result = await expectAllDoneOnce(ids);
    // A hand-back is not a failed delivery: it does not count against MAX_ATTEMPTS.
    for (const task of handedBack) expect(result.facts.get(task.id)!.attempts).toBe(1);
  });
});
