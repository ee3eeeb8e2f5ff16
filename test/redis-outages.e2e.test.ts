// Redis misbehaving at the worst moments, end to end: a real `npm start` deployment whose
// every Redis connection goes through a TCP proxy this test owns (the machine's Redis is
// never touched). Each scenario submits tasks while Redis drops connections, brings it
// back, and checks that every task is DONE exactly once and /ready tells the truth
// throughout — the service must heal itself, not need a restart.
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { client, until, type Client } from './helpers/client.ts';
import { auditWhenSettled } from './helpers/faults.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { startRedisProxy, type RedisProxy } from './helpers/redis-proxy.ts';
import { SCRIPTS, startProcess, startService, testEnv, type RunningProcess, type Service } from './helpers/service.ts';
import { submit } from './helpers/tasks.ts';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 180_000 });

const SMALL = { width: 64, format: 'PNG' };

let infra: TestInfra | undefined;
let proxy: RedisProxy | undefined;
let service: Service | undefined;

afterEach(async () => {
  await service?.stop();
  await proxy?.close();
  await infra?.dispose();
  service = proxy = infra = undefined;
});

async function deployment(label: string, { blockRedisAtStart }: { blockRedisAtStart: boolean }) {
  infra = await createInfra(label);
  proxy = await startRedisProxy();
  if (blockRedisAtStart) proxy.cut();
  // Workers cannot be ready without Redis: then the test waits for them to have tried it.
  const env = { REDIS_URL: proxy.url, WORKERS: '2', RECONCILE_INTERVAL_MS: '250' };
  service = await startService(infra, env, SCRIPTS.start, { workersReady: !blockRedisAtStart });
  const alice = client(service.url, await infra.createKey('alice'));
  return { infra, proxy, service, alice };
}

async function readiness(url: string): Promise<{ status: number; body: Record<string, string> }> {
  const response = await fetch(`${url}/ready`);
  return { status: response.status, body: (await response.json()) as Record<string, string> };
}

/** All at once: while Redis is down, each create waits for its enqueue to fail. */
function submitAll(alice: Client, image: Buffer, n: number): Promise<string[]> {
  return Promise.all(Array.from({ length: n }, () => submit(alice, image, SMALL)));
}

/** Pids of the worker processes whose queue consumer has failed to connect to Redis so far (from their log). */
function workersRefused(output: string): Set<number> {
  const pids = new Set<number>();
  for (const line of output.split('\n')) {
    if (!line.includes('queue could not connect')) continue;
    try {
      const entry = JSON.parse(line) as { pid: number; role: string };
      if (entry.role === 'worker') pids.add(entry.pid);
    } catch {
      // not a log line of ours
    }
  }
  return pids;
}

async function expectAllDoneOnce(sql: TestInfra['sql'], ids: string[]) {
  const result = await auditWhenSettled(sql, ids, 90_000);
  expect(result.stuck, 'stuck tasks').toEqual([]);
  expect(result.lost).toEqual([]);
  expect(result.duplicates).toEqual([]);
  expect([...result.facts.values()].map((task) => task.status)).toEqual(ids.map(() => 'DONE'));
}

describe('Redis dropping connections', () => {
  it('during start-up: nothing is taken meanwhile, /ready says 503, and everything runs once Redis is back', async () => {
    const image = await photo(200, 150);
    const { infra, proxy, service, alice } = await deployment('redis_startup', { blockRedisAtStart: true });
    const during = await readiness(service.url);
    expect(during.status).toBe(503);
    expect(during.body.redis).not.toBe('ok');
    expect(during.body.postgres).toBe('ok');
    const ids = await submitAll(alice, image, 4);
    // Every process has tried (and failed) to reach Redis by now, more than once: the
    // queue consumers of both workers among them.
    await until(
      async () => ({ refused: proxy.refusedConnections(), workers: workersRefused(service.output()).size }),
      ({ refused, workers }) => refused >= 10 && workers >= 2,
      60_000,
      50,
    );
    proxy.unblock();
    await expectAllDoneOnce(infra.sql, ids);
    expect((await readiness(service.url)).status).toBe(200);
    // Work submitted after the outage flows as usual.
    await expectAllDoneOnce(infra.sql, await submitAll(alice, image, 2));
  });

  it('cut after a healthy start, before anything was enqueued: the same', async () => {
    const image = await photo(200, 150);
    const { infra, proxy, service, alice } = await deployment('redis_first_enqueue', { blockRedisAtStart: false });
    await until(() => readiness(service.url), (r) => r.status === 200, 30_000, 100);
    proxy.cut();
    const ids = await submitAll(alice, image, 4);
    const during = await readiness(service.url);
    expect(during.status).toBe(503);
    expect(during.body.redis).not.toBe('ok');
    await until(() => Promise.resolve(proxy.refusedConnections()), (n) => n >= 10, 60_000, 50);
    proxy.unblock();
    await expectAllDoneOnce(infra.sql, ids);
    expect((await readiness(service.url)).status).toBe(200);
    await expectAllDoneOnce(infra.sql, await submitAll(alice, image, 2));
  });
});

describe('a worker whose Redis connections silently stop passing data (black-holed)', () => {
  let worker: RunningProcess | undefined;
  afterAll(() => worker?.stop());

  it('finds a due task waiting while it is idle, says so, rebuilds its queue consumer and runs the task', async () => {
    const image = await photo(200, 150);
    infra = await createInfra('redis_blackhole');
    proxy = await startRedisProxy();
    // The API talks to Redis directly; only the worker goes through the proxy. Both start at once.
    worker = startProcess(SCRIPTS.worker, testEnv(infra, { REDIS_URL: proxy.url, STUCK_QUEUE_MS: '2000', RECONCILE_INTERVAL_MS: '250' }));
    service = await startService(infra, { WORKERS: '0' }, SCRIPTS.api);
    await worker.waitFor(/worker ready/);
    const alice = client(service.url, await infra.createKey('alice'));
    await expectAllDoneOnce(infra.sql, await submitAll(alice, image, 1));

    proxy.freeze();
    const ids = await submitAll(alice, image, 2);
    await worker.waitFor(/a due task waits while this worker is idle; rebuilding its queue consumer/, 60_000);
    await expectAllDoneOnce(infra.sql, ids);
    const [{ waited }] = await infra.sql<{ waited: number }>(
      `SELECT count(*)::int AS waited FROM "TaskEvent" WHERE "taskId" = ANY($1::uuid[]) AND status = 'RUNNING'`,
      [ids],
    );
    expect(waited).toBe(2); // each ran once: the repair took nothing twice
  });
});
