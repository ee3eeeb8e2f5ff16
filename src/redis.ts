// The one place that constructs ioredis clients: pub/sub and direct commands. (bee-queue
// brings its own node_redis clients: src/job-queue.ts.) Every key and channel is
// namespaced by REDIS_PREFIX.
import { RedisPubSub } from 'graphql-redis-subscriptions';
import { Redis, type RedisOptions } from 'ioredis';
import { config } from './config.ts';
import { log } from './log.ts';
import { withTimeout } from './timeout.ts';

export function channel(name: string): string {
  return `${config.redisPrefix}:${name}`;
}

const redisOptions: RedisOptions = {
  // Never hang a request on a dead Redis: fail the command, let the caller decide.
  maxRetriesPerRequest: 2,
  connectTimeout: 5000,
  retryStrategy: (times) => Math.min(50 * 2 ** times, 2000),
};

export function createRedis(name: string, options: RedisOptions = {}, Connection: typeof Redis = Redis): Redis {
  const client = new Connection(config.redisUrl, { ...redisOptions, ...options, connectionName: `${config.redisPrefix}:${name}` });
  client.on('error', (error) => log.warn({ err: error.message, redis: name }, 'redis connection error'));
  return client;
}

let commands: Redis | undefined;
/** A shared connection for plain commands (readiness, queue inspection, rate limits). */
export function redisCommands(): Redis {
  commands ??= createRedis('commands');
  return commands;
}

// ---- graphql-redis-subscriptions: the one place that knows its traps -------------------
// Checked against graphql-redis-subscriptions 2.7.0 and ioredis 5 (test/redis-pubsub.test.ts
// names the installed versions and fails when a trap is no longer covered). Both traps are
// promises the library drops; they reject when the connection is closed with the command
// unanswered (a process stopping during an outage), and unhandled that ends the process.

/**
 * The subscriber connection. The library fires UNSUBSCRIBE/PUNSUBSCRIBE when a channel's
 * last subscriber leaves and drops the promise; a channel left subscribed after a failed
 * UNSUBSCRIBE only costs ignored messages, so the failure is logged, not thrown.
 */
class SubscriberConnection extends Redis {
  override unsubscribe(...args: unknown[]): Promise<unknown> {
    return logged(super.unsubscribe(...(args as [string])), 'unsubscribe');
  }
  override punsubscribe(...args: unknown[]): Promise<unknown> {
    return logged(super.punsubscribe(...(args as [string])), 'punsubscribe');
  }
}

function logged(result: Promise<unknown>, command: string): Promise<unknown> {
  result.catch((error: Error) => log.warn({ err: error.message }, `redis ${command} failed`));
  return result;
}

let pubsub: { engine: RedisPubSub; publisher: Redis; subscriber: Redis } | undefined;
export function redisPubSub() {
  if (!pubsub) {
    const publisher = createRedis('publisher');
    const subscriber = createRedis('subscriber', {}, SubscriberConnection);
    pubsub = { engine: new RedisPubSub({ publisher, subscriber }), publisher, subscriber };
  }
  return pubsub;
}

/**
 * engine.subscribe, minus its traps. Our caller gets a failure as a rejection.
 *  - While a channel's first SUBSCRIBE is in flight, the library parks a promise in its
 *    private `subsPendingRefsMap` that only later subscribers to that channel await; if
 *    SUBSCRIBE fails and nobody else waited, it rejects unhandled. (No public way to reach
 *    it exists; this is the only read of a private field of the library.)
 *  - ioredis writes a SUBSCRIBE issued between connect and ready straight away; its ready
 *    check (INFO) is then refused in subscriber mode. So subscribe only on a ready
 *    connection (channels subscribed before a reconnect are re-subscribed by ioredis).
 */
export async function subscribeChannel(topic: string, listener: (message: never) => void): Promise<number> {
  const { engine, subscriber } = redisPubSub();
  if (subscriber.status !== 'ready') await whenReady(subscriber);
  const subscribed = engine.subscribe(topic, listener);
  const pending = (engine as unknown as { subsPendingRefsMap?: Map<string, { pending?: Promise<unknown> }> }).subsPendingRefsMap;
  pending?.get(topic)?.pending?.catch(() => {});
  return subscribed;
}

/** How long a new subscription waits for the pub/sub connection before it fails. */
const READY_TIMEOUT_MS = 5000;

function whenReady(connection: Redis): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      connection.off('ready', onReady);
      reject(new Error(`the Redis pub/sub connection is not ready after ${READY_TIMEOUT_MS} ms`));
    }, READY_TIMEOUT_MS);
    // After ioredis's own 'ready' work (re-subscribing) is done.
    const onReady = () => {
      clearTimeout(timer);
      setImmediate(resolve);
    };
    connection.once('ready', onReady);
  });
}

export async function closeRedis(): Promise<void> {
  const clients = [commands, pubsub?.publisher, pubsub?.subscriber].filter(Boolean) as Redis[];
  // QUIT waits for an answer; with Redis down that could be forever, so cut after a second.
  await Promise.allSettled(
    clients.map((client) =>
      withTimeout(client.quit(), 1000).catch(() => {}).finally(() => client.disconnect()),
    ),
  );
  commands = undefined;
  pubsub = undefined;
}
