// The one place that constructs ioredis clients: pub/sub and direct commands. (bee-queue
// brings its own node_redis clients: src/job-queue.ts.) Every key and channel is
// namespaced by REDIS_PREFIX.
import { RedisPubSub } from 'graphql-redis-subscriptions';
import { Redis, type RedisOptions } from 'ioredis';
import { config } from './config.ts';
import { log } from './log.ts';

export function channel(name: string): string {
  return `${config.redisPrefix}:${name}`;
}

const redisOptions: RedisOptions = {
  // Never hang a request on a dead Redis: fail the command, let the caller decide.
  maxRetriesPerRequest: 2,
  connectTimeout: 5000,
  retryStrategy: (times) => Math.min(50 * 2 ** times, 2000),
};

export function createRedis(name: string, options: RedisOptions = {}): Redis {
  const client = new Redis(config.redisUrl, { ...redisOptions, ...options, connectionName: `${config.redisPrefix}:${name}` });
  client.on('error', (error) => log.warn({ err: error.message, redis: name }, 'redis connection error'));
  return client;
}

let commands: Redis | undefined;
/** A shared connection for plain commands (readiness, queue inspection, rate limits). */
export function redisCommands(): Redis {
  commands ??= createRedis('commands');
  return commands;
}

let pubsub: { engine: RedisPubSub; publisher: Redis; subscriber: Redis } | undefined;
export function redisPubSub() {
  if (!pubsub) {
    const publisher = createRedis('publisher');
    const subscriber = createRedis('subscriber');
    // graphql-redis-subscriptions fires UNSUBSCRIBE and drops its promise. While Redis is
    // down that promise rejects (maxRetriesPerRequest), and an unhandled rejection would
    // end the process; a channel left subscribed only costs ignored messages.
    for (const method of ['unsubscribe', 'punsubscribe'] as const) {
      const original = subscriber[method].bind(subscriber) as (...args: unknown[]) => Promise<unknown>;
      (subscriber as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
        const result = original(...args);
        result.catch((error: Error) => log.warn({ err: error.message }, `redis ${method} failed`));
        return result;
      };
    }
    pubsub = { engine: new RedisPubSub({ publisher, subscriber }), publisher, subscriber };
  }
  return pubsub;
}

/**
 * engine.subscribe, minus a trap: while a channel's SUBSCRIBE is in flight,
 * graphql-redis-subscriptions parks a promise that only later subscribers to that channel
 * await. If SUBSCRIBE fails (Redis down) and nobody else waited, that promise rejects
 * unhandled and ends the process. Our caller still gets the failure.
 */
export async function subscribeTopic(topic: string, listener: (message: never) => void): Promise<number> {
  const { engine, subscriber } = redisPubSub();
  // ioredis writes a SUBSCRIBE issued between connect and ready straight away; its ready
  // check (INFO) is then refused in subscriber mode, which failed the subscription and
  // ended the process. So subscribe only on a ready connection (channels subscribed
  // before a reconnect are re-subscribed by ioredis itself).
  if (subscriber.status !== 'ready') await ready(subscriber);
  const subscribed = engine.subscribe(topic, listener);
  const pending = (engine as unknown as { subsPendingRefsMap: Map<string, { pending?: Promise<unknown> }> }).subsPendingRefsMap;
  pending.get(topic)?.pending?.catch(() => {});
  return subscribed;
}

/** How long a new subscription waits for the pub/sub connection before it fails. */
const READY_TIMEOUT_MS = 5000;

function ready(connection: Redis): Promise<void> {
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
      Promise.race([client.quit(), new Promise((resolve) => setTimeout(resolve, 1000).unref())]).finally(() => client.disconnect()),
    ),
  );
  commands = undefined;
  pubsub = undefined;
}
