// The one place that constructs Redis clients: ioredis connections for pub/sub and
// direct commands, and the bee-queue queue (which brings its own node_redis client).
// Every key and channel is namespaced by REDIS_PREFIX.
import BeeQueue from 'bee-queue';
import { RedisPubSub } from 'graphql-redis-subscriptions';
import { Redis, type RedisOptions } from 'ioredis';
import { config } from './config.ts';
import { log } from './log.ts';

export const QUEUE_NAME = 'tasks';
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

export function createRedis(name: string): Redis {
  const client = new Redis(config.redisUrl, { ...redisOptions, connectionName: `${config.redisPrefix}:${name}` });
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
    pubsub = { engine: new RedisPubSub({ publisher, subscriber }), publisher, subscriber };
  }
  return pubsub;
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
      // A worker that stops renewing its job lock for this long has its job redelivered.
      stallInterval: 5000,
      activateDelayedJobs: false,
    });
    queue.on('error', (error) => log.warn({ err: error.message }, 'queue redis error'));
    queues.set(role, queue);
  }
  return queue;
}

export async function closeRedis(): Promise<void> {
  await Promise.allSettled([...queues.values()].map((queue) => queue.close(2000)));
  queues.clear();
  const clients = [commands, pubsub?.publisher, pubsub?.subscriber].filter(Boolean) as Redis[];
  await Promise.allSettled(clients.map((client) => client.quit()));
  commands = undefined;
  pubsub = undefined;
}
