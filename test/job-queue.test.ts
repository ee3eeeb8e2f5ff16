// The queue clients (src/job-queue.ts) in-process, against the real Redis behind a TCP
// proxy this test owns: a producer or consumer whose first connection fails must be
// replaced, not kept (bee-queue 2.0.0 keeps the rejected promise of a failed first
// connection, and every later command waits on it); and the bee-queue internals we rely
// on are still where we expect them.
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from './helpers/client.ts';
import { startRedisProxy, type RedisProxy } from './helpers/redis-proxy.ts';

const proxy: RedisProxy = await startRedisProxy();
process.env.REDIS_URL = proxy.url;
process.env.REDIS_PREFIX = `tltest_jobqueue_${randomBytes(4).toString('hex')}`;
process.env.LOG_LEVEL = 'silent';
const { JobConsumer, MAX_QUEUE_RETRY_DELAY_MS, createQueue } = await import('../src/job-queue.ts');
const { closeQueue, enqueue, jobsPresent, queueCounts } = await import('../src/tasks/queue.ts');
const { closeRedis, redisCommands } = await import('../src/redis.ts');

const beeQueueVersion = (createRequire(import.meta.url)('bee-queue/package.json') as { version: string }).version;

const consumers: InstanceType<typeof JobConsumer>[] = [];

// One consumer at a time: any open one would take the next test's jobs.
afterEach(async () => {
  proxy.unblock();
  await Promise.all(consumers.splice(0).map((consumer) => consumer.close(1000)));
});

afterAll(async () => {
  const redis = redisCommands();
  const keys = await redis.keys(`${process.env.REDIS_PREFIX}:*`);
  if (keys.length) await redis.del(...keys);
  await closeQueue();
  await closeRedis();
  await proxy.close();
});

/** Enqueues until it succeeds (each try waits for Redis at most its own timeout). */
async function enqueueWhenPossible(id: string) {
  await until(() => enqueue(id), (ok) => ok, 60_000, 100);
}

describe('queue clients when Redis drops connections', () => {
  beforeAll(() => proxy.unblock());

  it('a producer whose first connection was dropped is replaced, and enqueues once Redis is back', async () => {
    proxy.cut();
    const id = randomUUID();
    expect(await enqueue(id)).toBe(false);
    await expect(queueCounts(500)).rejects.toThrow();
    proxy.unblock();
    await enqueueWhenPossible(id);
    expect(await jobsPresent([id])).toEqual(new Set([id]));
    expect(await queueCounts()).toMatchObject({ waiting: expect.any(Number) });
  });

  it('a consumer started while Redis drops connections takes jobs once Redis is back', async () => {
    proxy.cut();
    const taken: string[] = [];
    const consumer = new JobConsumer(1, async (taskId) => void taken.push(taskId));
    consumers.push(consumer);
    const started = consumer.start();
    // Let it fail to connect at least once: the proxy has refused a connection by then.
    await until(() => Promise.resolve(proxy.refusedConnections()), (n) => n >= 2, 30_000, 20);
    expect(consumer.running).toBe(false);
    proxy.unblock();
    await started;
    expect(consumer.running).toBe(true);
    const id = randomUUID();
    await enqueueWhenPossible(id);
    await until(() => Promise.resolve(taken), (t) => t.includes(id), 30_000, 20);
  });

  it('a consumer whose connections are cut while it waits for jobs takes jobs again afterwards', async () => {
    const taken: string[] = [];
    const consumer = new JobConsumer(1, async (taskId) => void taken.push(taskId));
    consumers.push(consumer);
    await consumer.start();
    const first = randomUUID();
    await enqueueWhenPossible(first);
    await until(() => Promise.resolve(taken), (t) => t.includes(first), 30_000, 20);
    proxy.cut();
    const second = randomUUID();
    expect(await enqueue(second)).toBe(false);
    proxy.unblock();
    await enqueueWhenPossible(second);
    await until(() => Promise.resolve(taken), (t) => t.includes(second), 60_000, 20);
  });

  it('a rebuilt consumer takes jobs (the liveness check\'s repair)', async () => {
    const taken: string[] = [];
    const consumer = new JobConsumer(1, async (taskId) => void taken.push(taskId));
    consumers.push(consumer);
    await consumer.start();
    await consumer.rebuild('test');
    expect(consumer.running).toBe(true);
    const id = randomUUID();
    await enqueueWhenPossible(id);
    await until(() => Promise.resolve(taken), (t) => t.includes(id), 30_000, 20);
  });
});

describe(`bee-queue internals we rely on (checked against bee-queue 2.0.0, installed: ${beeQueueVersion})`, () => {
  it(`the retry delay for taking jobs doubles from 250 ms and stops at ${MAX_QUEUE_RETRY_DELAY_MS} ms`, async () => {
    const queue = createQueue('worker');
    const internal = queue as unknown as { _redisFailureRetryDelay: number };
    const delays: number[] = [];
    internal._redisFailureRetryDelay = 0;
    for (let failure = 0; failure < 10; failure++) {
      // What Queue#_waitForJob does after each failed BRPOPLPUSH:
      internal._redisFailureRetryDelay = internal._redisFailureRetryDelay ? internal._redisFailureRetryDelay * 2 : 250;
      delays.push(internal._redisFailureRetryDelay);
    }
    expect(delays).toEqual([250, 500, 1000, 2000, 2000, 2000, 2000, 2000, 2000, 2000]);
    await queue.close(1000).catch(() => {});
  });

  it('keeps, doubles and resets that delay in the field we cap, keeps its first connection, and has the Lua cache we reload', () => {
    const require = createRequire(import.meta.url);
    const source = readFileSync(require.resolve('bee-queue/lib/queue.js'), 'utf8');
    expect(source).toMatch(/this\._redisFailureRetryDelay\s*\?\s*this\._redisFailureRetryDelay \* 2/);
    expect(source).toMatch(/\.delay\(this\._redisFailureRetryDelay\)/);
    expect(source).toMatch(/this\._redisFailureRetryDelay = 0;/);
    // The reason JobConsumer and ProducerQueue replace a queue that did not connect:
    expect(source).toMatch(/return this\._ready\.then\(\(\) => this\._commandable\(requireBlocking\)\)/);
    expect(typeof (require('bee-queue/lib/lua') as { buildCache?: unknown }).buildCache).toBe('function');
  });
});
