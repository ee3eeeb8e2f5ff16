// The one place that constructs Redis clients: ioredis connections for pub/sub and
// direct commands, and the bee-queue queue (which brings its own node_redis client).
// Every key and channel is namespaced by REDIS_PREFIX.
import { createRequire } from 'node:module';
import BeeQueue from 'bee-queue';
import { RedisPubSub } from 'graphql-redis-subscriptions';
import { Redis, type RedisOptions } from 'ioredis';
import { config } from './config.ts';
import { log } from './log.ts';

export const QUEUE_NAME = 'tasks';
/** bee-queue's stall interval; workers check for stalled jobs every half of it. */
export const STALL_INTERVAL_MS = 3000;
/** bee-queue's own key prefix; its keys are `${BEE_PREFIX}:${QUEUE_NAME}:…`. */
export const BEE_PREFIX = `${config.redisPrefix}:bq`;

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

// bee-queue loads its Lua scripts once, when the queue first connects, and then only
// calls EVALSHA: after a Redis restart (which forgets scripts) every queue command would
// fail with NOSCRIPT for good. We load them again whenever its connection comes back.
const beeLua = createRequire(import.meta.url)('bee-queue/lib/lua') as { buildCache(client: unknown): Promise<unknown> };

interface NodeRedisClient {
  on(event: 'ready', listener: () => void): void;
  send_command(command: string, args: string[], callback?: (error: Error | null) => void): void;
}

/** Names a bee-queue connection (CLIENT SETNAME) on every (re)connect, so operators and tests can find it. */
function nameOnEveryConnect(client: NodeRedisClient | null, name: string, onReady?: () => void) {
  if (!client) return;
  const apply = () => {
    client.send_command('CLIENT', ['SETNAME', `${config.redisPrefix}:${name}`], () => {});
    onReady?.();
  };
  apply();
  client.on('ready', apply);
}

export type Queue = BeeQueue<{ taskId: string }>;
const queues = new Map<string, Queue>();

/**
 * The task queue. Producers (API, reconciler) and consumers (workers) get differently
 * configured instances; job events are off because they can be lost (see TOOLCHAIN.md):
 * the database and our own pub/sub are the truth.
 */
export function taskQueue(role: 'producer' | 'worker'): Queue {
  let queue = queues.get(role);
  if (!queue) {
    const url = new URL(config.redisUrl);
    queue = new BeeQueue<{ taskId: string }>(QUEUE_NAME, {
      prefix: BEE_PREFIX,
      redis: {
        host: url.hostname,
        port: Number(url.port || 6379),
        password: url.password || undefined,
        db: Number(url.pathname.slice(1) || 0),
        // node_redis v3 options: reconnect forever, but do not queue commands while down.
        retry_strategy: () => 1000,
        enable_offline_queue: false,
      } as BeeQueue.QueueSettings['redis'],
      isWorker: role === 'worker',
      getEvents: false,
      sendEvents: false,
      storeJobs: false,
      removeOnSuccess: true,
      removeOnFailure: true,
      // A job whose worker stopped renewing it (every STALL_INTERVAL_MS / 2) is put back
      // on the queue by the next stall check, 1-2 intervals after the worker died. That
      // covers jobs taken from Redis but not yet claimed in PostgreSQL; a task already
      // RUNNING is recovered through its lease (see reconciler.ts).
      stallInterval: STALL_INTERVAL_MS,
      activateDelayedJobs: false,
      // After a lost connection a worker retries taking jobs after 250 ms, doubling each
      // time up to MAX_QUEUE_RETRY_DELAY_MS (bee-queue's default starts at 1 s, unbounded):
      // it is back soon after Redis is, however long the outage.
      initialRedisFailureRetryDelay: 250,
    } as BeeQueue.QueueSettings);
    queue.on('error', (error) => log.warn({ err: error.message }, 'queue redis error'));
    capRetryDelay(queue);
    const q = queue as unknown as { client: NodeRedisClient | null; bclient: NodeRedisClient | null };
    queue
      .ready()
      .then(() => {
        nameOnEveryConnect(q.client, `bq-${role}`, () => {
          beeLua.buildCache(q.client).catch((error: Error) => log.warn({ err: error.message }, 'could not load queue scripts'));
        });
        nameOnEveryConnect(q.bclient, `bq-${role}-blocking`);
      })
      .catch((error: Error) => log.warn({ err: error.message }, 'queue failed to connect'));
    queues.set(role, queue);
  }
  return queue;
}

/** The longest a worker waits between attempts to take a job while Redis is unreachable. */
export const MAX_QUEUE_RETRY_DELAY_MS = 2000;

/**
 * bee-queue doubles its wait after every failed attempt to take a job, without a ceiling:
 * after a minute without Redis a worker would idle for another half minute once Redis is
 * back. Its delay lives in one internal field (`_redisFailureRetryDelay`, read, doubled
 * and written back in Queue#_waitForJob); a property that caps what is written keeps the
 * doubling and bounds it, like ioredis' own reconnect ceiling.
 */
function capRetryDelay(queue: object) {
  let delay = (queue as { _redisFailureRetryDelay?: number })._redisFailureRetryDelay ?? 0;
  Object.defineProperty(queue, '_redisFailureRetryDelay', {
    configurable: true,
    get: () => delay,
    set: (value: number) => {
      delay = Math.min(value, MAX_QUEUE_RETRY_DELAY_MS);
    },
  });
}

export async function closeRedis(): Promise<void> {
  await Promise.allSettled([...queues.values()].map((queue) => queue.close(2000)));
  queues.clear();
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
