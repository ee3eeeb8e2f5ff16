// The pub/sub clients (src/redis.ts) in-process, against the real Redis behind a TCP proxy
// this test owns: graphql-redis-subscriptions drops two promises that reject while Redis
// is down (the UNSUBSCRIBE of a channel's last subscriber, and the parked promise of a
// channel's first SUBSCRIBE); unhandled, either would end the process. src/redis.ts is the
// one place that catches them; this test fails when that no longer holds for the installed
// versions.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from './helpers/client.ts';
import { startRedisProxy, type RedisProxy } from './helpers/redis-proxy.ts';

const proxy: RedisProxy = await startRedisProxy();
process.env.REDIS_URL = proxy.url;
process.env.REDIS_PREFIX = `tltest_pubsub_${randomBytes(4).toString('hex')}`;
process.env.LOG_LEVEL = 'silent';
const { channel, closeRedis, redisPubSub, subscribeChannel } = await import('../src/redis.ts');

const version = (name: string) => (createRequire(import.meta.url)(`${name}/package.json`) as { version: string }).version;
const versions = `graphql-redis-subscriptions ${version('graphql-redis-subscriptions')}, ioredis ${version('ioredis')}`;

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});
afterEach(() => proxy.unblock());
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await closeRedis();
  await proxy.close();
});

/** A few turns of the event loop, so that a rejection nobody handles is reported. */
const turns = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
};

describe(`graphql-redis-subscriptions' dropped promises (checked against 2.7.0 and ioredis 5; installed: ${versions})`, () => {
  it('the library still parks the first SUBSCRIBE of a channel where src/redis.ts looks for it', async () => {
    const { engine } = redisPubSub();
    expect(engine).toHaveProperty('subsPendingRefsMap');
    expect((engine as unknown as { subsPendingRefsMap: unknown }).subsPendingRefsMap).toBeInstanceOf(Map);
  });

  it('a subscription that works, to begin with', async () => {
    const got: unknown[] = [];
    const id = await subscribeChannel(channel('works'), (message: never) => got.push(message));
    await redisPubSub().engine.publish(channel('works'), { hello: 1 });
    await until(async () => got.length, (n) => n === 1, 10_000);
    redisPubSub().engine.unsubscribe(id);
  });

  it("a channel's last unsubscribe while Redis is gone: no unhandled rejection", async () => {
    const id = await subscribeChannel(channel('unsubscribe'), () => {});
    proxy.cut();
    redisPubSub().engine.unsubscribe(id); // fires UNSUBSCRIBE and drops its promise
    // ioredis keeps the command across reconnects; closing the connection (as a process does
    // when it stops during an outage) is what fails it.
    await closeRedis();
    await turns();
    expect(unhandled).toEqual([]);
  });

  it("a channel's first SUBSCRIBE failing in flight: the caller gets the failure, nothing is unhandled", async () => {
    await until(async () => redisPubSub().subscriber.status, (status) => status === 'ready');
    proxy.freeze(); // SUBSCRIBE is written, no answer comes
    const subscribing = subscribeChannel(channel('in-flight'), () => {});
    const outcome = subscribing.then(
      () => 'subscribed',
      () => 'failed',
    );
    // ioredis keeps an unanswered SUBSCRIBE across reconnects; closing the connection (as a
    // process does when it stops during an outage) is what fails it.
    proxy.cut();
    await closeRedis();
    expect(await outcome).toBe('failed');
    await turns();
    expect(unhandled).toEqual([]);
  });
});
