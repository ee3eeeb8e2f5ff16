// Putting tasks on the Redis queue. Job id = task id, so enqueueing twice is harmless
// (bee-queue keeps one job per id). Redis is only a hint: a task is QUEUED in PostgreSQL
// first, and if this enqueue fails (Redis down) the reconciler enqueues it later.
import { BEE_PREFIX, ProducerQueue, QUEUE_NAME } from '../job-queue.ts';
import { log } from '../log.ts';
import { redisCommands } from '../redis.ts';
import { withTimeout } from '../timeout.ts';

const ENQUEUE_TIMEOUT_MS = 2000;

/** This process's producer: replaced whenever it could not connect (see src/job-queue.ts). */
const producer = new ProducerQueue();

/** Resolves true when the job is on the queue; never throws, never hangs. */
export async function enqueue(taskId: string): Promise<boolean> {
  try {
    const queue = await producer.get(ENQUEUE_TIMEOUT_MS);
    await withTimeout(queue.createJob({ taskId }).setId(taskId).save(), ENQUEUE_TIMEOUT_MS, 'no answer from Redis');
    return true;
  } catch (error) {
    log.warn({ taskId, err: (error as Error).message }, 'enqueue failed; the reconciler will retry');
    return false;
  }
}

/** Which of `taskIds` have a job in Redis (waiting, active or delayed). One round trip; throws if Redis does not answer. */
export async function jobsPresent(taskIds: string[]): Promise<Set<string>> {
  if (taskIds.length === 0) return new Set();
  const pipeline = redisCommands().pipeline();
  for (const id of taskIds) pipeline.hexists(`${BEE_PREFIX}:${QUEUE_NAME}:jobs`, id);
  const results = (await withTimeout(pipeline.exec(), ENQUEUE_TIMEOUT_MS, 'no answer from Redis')) ?? [];
  const present = new Set<string>();
  results.forEach(([error, exists], i) => {
    if (!error && exists === 1) present.add(taskIds[i]);
  });
  return present;
}

/** Queue depth by state, for /metrics and the chaos report; throws if the queue is unusable. */
export async function queueCounts(timeoutMs = ENQUEUE_TIMEOUT_MS) {
  const queue = await producer.get(timeoutMs);
  const counts = await withTimeout(queue.checkHealth(), timeoutMs, 'no answer from Redis');
  return { waiting: counts.waiting, active: counts.active, delayed: counts.delayed };
}

export function closeQueue(): Promise<void> {
  return producer.close();
}
