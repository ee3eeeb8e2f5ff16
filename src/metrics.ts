// Prometheus metrics of every Tasklane process, and how they reach one /metrics.
//
// Each process (API or worker) counts what happens in it in its own prom-client registry
// and writes a JSON snapshot of it to Redis every METRICS_PUSH_INTERVAL_MS, under
// `${REDIS_PREFIX}:metrics:<role>:<host>:<pid>` with a TTL of three intervals. An API
// answering /metrics merges its live registry with every other process's snapshot
// (counters and histograms summed), so any API's /metrics describes the whole deployment:
// scrape one of them. A process that dies drops out after its TTL (Prometheus' rate()
// treats the drop as a counter reset).
import os from 'node:os';
import client from 'prom-client';
import { config } from './config.ts';
import { log } from './log.ts';
import { redisCommands } from './redis.ts';

/** What this process counts, pushed to Redis and merged by the API. */
export const registry = new client.Registry();

export const taskTransitions = new client.Counter({
  name: 'tasklane_task_transitions_total',
  help: 'Task transitions, by the status entered and the job definition',
  labelNames: ['status', 'job_definition'] as const,
  registers: [registry],
});

export const jobDuration = new client.Histogram({
  name: 'tasklane_job_duration_seconds',
  help: 'Time a worker spent on one delivery of a task, from claim to its outcome (done, failed, retry, stopped)',
  labelNames: ['job_definition', 'outcome'] as const,
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
  registers: [registry],
});

export const queueWait = new client.Histogram({
  name: 'tasklane_queue_wait_seconds',
  help: 'Time a task waited QUEUED before a worker started it (retry backoff included)',
  labelNames: ['job_definition'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  registers: [registry],
});

export const claimsWaiting = new client.Counter({
  name: 'tasklane_claims_waiting_total',
  help: 'Deliveries a worker did not start because the task\'s key had MAX_RUNNING_TASKS_PER_KEY tasks running (the task waits for a slot, no attempt spent)',
  registers: [registry],
});

export const activeSubscriptions = new client.Gauge({
  name: 'tasklane_active_subscriptions',
  help: 'Open GraphQL subscriptions (SSE and WebSocket), by subscription field',
  labelNames: ['field'] as const,
  registers: [registry],
});

export const subscriptionStreams = new client.Gauge({
  name: 'tasklane_subscription_streams',
  help: 'Source streams behind the open subscriptions: identical subscriptions of one owner share one',
  registers: [registry],
});

export const httpDuration = new client.Histogram({
  name: 'tasklane_http_request_duration_seconds',
  help: 'HTTP requests, until the response starts (a stream counts until its first byte), by route',
  labelNames: ['method', 'route', 'status'] as const,
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const graphqlDuration = new client.Histogram({
  name: 'tasklane_graphql_operation_duration_seconds',
  help: 'GraphQL query and mutation execution, by operation type and root field',
  labelNames: ['operation_type', 'field'] as const,
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const queueRebuilds = new client.Counter({
  name: 'tasklane_queue_rebuilds_total',
  help: 'Queue clients replaced: one that could not connect (connect_failed), or a worker found idle while due tasks waited (stuck)',
  labelNames: ['role', 'reason'] as const,
  registers: [registry],
});

export const stuckQueueChecks = new client.Counter({
  name: 'tasklane_stuck_queue_detected_total',
  help: 'Times a worker found due QUEUED tasks older than STUCK_QUEUE_MS while it had a free slot',
  registers: [registry],
});

export const callbackDeliveries = new client.Counter({
  name: 'tasklane_callback_deliveries_total',
  help: 'Callback delivery attempts, by outcome: delivered (a 2xx ended it), failed (retried later), gave_up (failed, and its retry time CALLBACK_RETRY_FOR_MS is over)',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const retentionImagesRemoved = new client.Counter({
  name: 'tasklane_retention_images_removed_total',
  help: 'Images whose bytes retention removed from the blob store, RESULT_TTL_MS after their task ended',
  registers: [registry],
});

export const retentionTasksRemoved = new client.Counter({
  name: 'tasklane_retention_tasks_removed_total',
  help: 'Ended tasks retention removed with their audit trail, TASK_TTL_MS after their last change',
  registers: [registry],
});

export const orphanBlobsRemoved = new client.Counter({
  name: 'tasklane_orphan_blobs_removed_total',
  help: 'Blobs no row pointed at (a crash between a write and its row, a delete that failed) removed after the grace period',
  registers: [registry],
});

/** Called by the task store for every transition it commits. */
export function countTransition(task: { status: string; jobDefinition: string }): void {
  taskTransitions.inc({ status: task.status, job_definition: task.jobDefinition });
}

const KEY_PREFIX = () => `${config.redisPrefix}:metrics:`;
const ownKey = (role: string) => `${KEY_PREFIX()}${role}:${os.hostname()}:${process.pid}`;

async function push(role: string): Promise<void> {
  const snapshot = JSON.stringify(await registry.getMetricsAsJSON());
  await redisCommands().set(ownKey(role), snapshot, 'PX', config.metricsPushIntervalMs * 3);
}

/** Starts pushing this process's snapshot to Redis; returns a stop function. */
export function startMetricsPush(role: 'api' | 'worker'): () => Promise<void> {
  const tick = () =>
    push(role).catch((error) => log.debug({ err: (error as Error).message }, 'metrics push failed; next one retries'));
  void tick();
  const timer = setInterval(tick, config.metricsPushIntervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await tick(); // the last counts stay visible until the TTL runs out
  };
}

type Snapshot = Awaited<ReturnType<typeof registry.getMetricsAsJSON>>;

/** Every other process's latest snapshot (this process is read live instead). */
export async function otherSnapshots(role: string): Promise<Snapshot[]> {
  const redis = redisCommands();
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${KEY_PREFIX()}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0');
  const others = keys.filter((key) => key !== ownKey(role));
  if (others.length === 0) return [];
  const values = await redis.mget(...others);
  const snapshots: Snapshot[] = [];
  for (const value of values) {
    if (!value) continue; // expired between SCAN and MGET
    try {
      snapshots.push(JSON.parse(value) as Snapshot);
    } catch {
      log.warn('ignoring an unreadable metrics snapshot in Redis');
    }
  }
  return snapshots;
}

/** This process's live metrics merged with every other process's snapshot. */
export async function clusterRegistry(role: string): Promise<client.Registry> {
  const own = await registry.getMetricsAsJSON();
  let others: Snapshot[] = [];
  try {
    others = await otherSnapshots(role);
  } catch (error) {
    // Redis down: still serve this process's own view rather than nothing.
    log.warn({ err: (error as Error).message }, 'could not read other processes\' metrics from Redis');
  }
  return client.AggregatorRegistry.aggregate([own, ...others]);
}
