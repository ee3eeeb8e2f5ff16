// The one place that constructs bee-queue queues and knows their internals (checked
// against bee-queue 2.0.0; test/job-queue.test.ts guards what we rely on).
//
// bee-queue keeps the promise of its first connection: when that one fails (Redis down,
// or accepting and dropping connections at that moment), the queue is unusable for good —
// every later command waits on the rejected promise. So nothing here keeps a queue that
// did not connect: `ProducerQueue` hands out only a connected queue and replaces one that
// failed; `JobConsumer` connects before it takes jobs, and can be rebuilt whole.
import { createRequire } from 'node:module';
import BeeQueue from 'bee-queue';
import { config } from './config.ts';
import { log } from './log.ts';
import { queueRebuilds } from './metrics.ts';
import { withTimeout } from './timeout.ts';

export const QUEUE_NAME = 'tasks';
/** bee-queue's stall interval; workers check for stalled jobs every half of it. */
export const STALL_INTERVAL_MS = 3000;
/** bee-queue's own key prefix; its keys are `${BEE_PREFIX}:${QUEUE_NAME}:…`. */
export const BEE_PREFIX = `${config.redisPrefix}:bq`;
/** A queue that has not connected this long is given up and replaced by a fresh one. */
export const CONNECT_DEADLINE_MS = 5000;
/** The longest a worker waits between attempts to take a job (or to connect) while Redis is unreachable. */
export const MAX_QUEUE_RETRY_DELAY_MS = 2000;

export type Queue = BeeQueue<{ taskId: string }>;
type Role = 'producer' | 'worker';

// bee-queue loads its Lua scripts once, when the queue first connects, and then only
// calls EVALSHA: after a Redis restart (which forgets scripts) every queue command would
// fail with NOSCRIPT for good. We load them again whenever its connection comes back.
const beeLua = createRequire(import.meta.url)('bee-queue/lib/lua') as { buildCache(client: unknown): Promise<unknown> };

/** The node_redis v3 client bee-queue brings along (its `client` and `bclient` fields). */
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

/**
 * A new bee-queue queue. Producers (API, reconciler) and consumers (workers) are configured
 * differently; job events are off because they can be lost (see TOOLCHAIN.md): the
 * database and our own pub/sub are the truth.
 */
export function createQueue(role: Role): Queue {
  const url = new URL(config.redisUrl);
  const queue = new BeeQueue<{ taskId: string }>(QUEUE_NAME, {
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
    // time up to MAX_QUEUE_RETRY_DELAY_MS (bee-queue's default starts at 1 s, unbounded).
    initialRedisFailureRetryDelay: 250,
  } as BeeQueue.QueueSettings);
  queue.on('error', (error) => log.warn({ err: error.message, role }, 'queue redis error'));
  capRetryDelay(queue);
  const clients = queue as unknown as { client: NodeRedisClient | null; bclient: NodeRedisClient | null };
  queue
    .ready()
    .then(() => {
      nameOnEveryConnect(clients.client, `bq-${role}`, () => {
        beeLua.buildCache(clients.client).catch((error: Error) => log.warn({ err: error.message }, 'could not load queue scripts'));
      });
      nameOnEveryConnect(clients.bclient, `bq-${role}-blocking`);
    })
    // A failed first connection is handled by whoever awaits ready(); this only keeps it from being unhandled.
    .catch(() => {});
  return queue;
}

/** Closes a queue we no longer use, without waiting on Redis for long. */
function discard(queue: Queue) {
  queue.close(1000).catch(() => {});
}

/**
 * A connected queue, connecting a new bee-queue queue when there is none; resolves with
 * it once it is connected. A queue that fails to connect, or has not connected within
 * CONNECT_DEADLINE_MS, is discarded, so that the next call starts afresh.
 */
function connect(role: Role): Promise<Queue> {
  const queue = createQueue(role);
  return withTimeout(queue.ready().then(() => queue), CONNECT_DEADLINE_MS, 'queue connect: no answer from Redis').catch((error: Error) => {
    discard(queue);
    queueRebuilds.inc({ role, reason: 'connect_failed' });
    log.warn({ role, err: error.message }, 'queue could not connect; a new one will be made');
    throw error;
  });
}

/** The queue a process puts jobs on (API, reconciler) and reads its depth from. */
export class ProducerQueue {
  #queue?: Promise<Queue>;

  /** A connected queue within `timeoutMs`, or throws; the next call tries again. */
  get(timeoutMs: number): Promise<Queue> {
    if (!this.#queue) {
      const pending = connect('producer');
      this.#queue = pending;
      pending.catch(() => {
        if (this.#queue === pending) this.#queue = undefined;
      });
    }
    return withTimeout(this.#queue, timeoutMs, 'queue: no answer from Redis');
  }

  async close(): Promise<void> {
    const pending = this.#queue;
    this.#queue = undefined;
    const queue = await pending?.catch(() => undefined);
    await queue?.close(2000).catch(() => {});
  }
}

/**
 * A worker's side of the queue: takes jobs and runs `handler` on each, up to
 * `concurrency` at once. It takes jobs only from a queue that connected (retrying with
 * backoff until one does) and can be rebuilt whole (`rebuild`) when it is found stuck.
 */
export class JobConsumer {
  #queue?: Queue;
  #starting?: Promise<void>;
  #closed = false;

  constructor(
    private readonly concurrency: number,
    private readonly handler: (taskId: string) => Promise<void>,
  ) {}

  /** Connects and starts taking jobs; resolves once it does (or it was closed meanwhile). */
  start(): Promise<void> {
    this.#starting ??= this.#connectAndProcess().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  /** Whether a connected queue is taking jobs now. */
  get running(): boolean {
    return this.#queue !== undefined;
  }

  async #connectAndProcess(): Promise<void> {
    for (let attempt = 0; !this.#closed; attempt++) {
      let queue: Queue;
      try {
        queue = await connect('worker');
        // Queue#process first checks for stalled jobs and only then starts taking jobs; if
        // that check fails it never starts. Doing one check first makes that unlikely;
        // the worker's liveness check (worker/liveness.ts) catches what is left.
        await withTimeout(queue.checkStalledJobs(), CONNECT_DEADLINE_MS, 'stalled-job check: no answer from Redis');
      } catch {
        await new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** attempt, MAX_QUEUE_RETRY_DELAY_MS)));
        continue;
      }
      if (this.#closed) {
        discard(queue);
        return;
      }
      queue.process(this.concurrency, (job) => this.handler(job.data.taskId));
      // Put back the jobs of workers that died (stalled: not renewed within STALL_INTERVAL_MS).
      // No callback: with one, bee-queue leaves the rejection of a failed check unhandled,
      // which kills the process. Without, later failures become 'error' events.
      queue.on('stalled', (jobId: string) => log.info({ taskId: jobId }, 'stalled job put back on the queue'));
      queue.checkStalledJobs(STALL_INTERVAL_MS / 2).catch((error: Error) => log.warn({ err: error.message }, 'stalled-job check failed'));
      this.#queue = queue;
      return;
    }
  }

  /**
   * Replaces the queue with a fresh one. The old one stops taking jobs at once; the jobs it
   * is running go on to their end (their results are written through PostgreSQL, not it).
   */
  async rebuild(reason: string): Promise<void> {
    if (this.#closed || this.#starting) return;
    const old = this.#queue;
    this.#queue = undefined;
    queueRebuilds.inc({ role: 'worker', reason });
    log.warn({ reason }, 'rebuilding the job consumer');
    old?.close(config.jobTimeoutMs + 5000).catch(() => {});
    await this.start();
  }

  /** Stops taking jobs and waits up to `timeoutMs` for the running ones. */
  async close(timeoutMs: number): Promise<void> {
    this.#closed = true;
    await this.#starting;
    await this.#queue?.close(timeoutMs).catch(() => {});
  }
}
