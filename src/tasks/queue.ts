// Putting tasks on the Redis queue. Job id = task id, so enqueueing twice is harmless
// (bee-queue keeps one job per id). Redis is only a hint: a task is QUEUED in PostgreSQL
// first, and if this enqueue fails (Redis down) the reconciler enqueues it later.
import { log } from '../log.ts';
import { BEE_PREFIX, QUEUE_NAME, redisCommands, taskQueue } from '../redis.ts';

const ENQUEUE_TIMEOUT_MS = 2000;

/** Resolves true when the job is on the queue; never throws, never hangs. */
export async function enqueue(taskId: string): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const save = taskQueue('producer').createJob({ taskId }).setId(taskId).save();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from Redis in ${ENQUEUE_TIMEOUT_MS} ms`)), ENQUEUE_TIMEOUT_MS);
    });
    await Promise.race([save, timeout]);
    return true;
  } catch (error) {
    log.warn({ taskId, err: (error as Error).message }, 'enqueue failed; the reconciler will retry');
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** Which of `taskIds` have a job in Redis (waiting, active or delayed). One round trip; throws if Redis does not answer. */
export async function jobsPresent(taskIds: string[]): Promise<Set<string>> {
  if (taskIds.length === 0) return new Set();
  const pipeline = redisCommands().pipeline();
  for (const id of taskIds) pipeline.hexists(`${BEE_PREFIX}:${QUEUE_NAME}:jobs`, id);
  let timer: NodeJS.Timeout | undefined;
  const results =
    (await Promise.race([
      pipeline.exec(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer from Redis in ${ENQUEUE_TIMEOUT_MS} ms`)), ENQUEUE_TIMEOUT_MS);
      }),
    ]).finally(() => clearTimeout(timer))) ?? [];
  const present = new Set<string>();
  results.forEach(([error, exists], i) => {
    if (!error && exists === 1) present.add(taskIds[i]);
  });
  return present;
}

/** Queue depth by state, for /metrics and the chaos report. */
export async function queueCounts() {
  const counts = await taskQueue('producer').checkHealth();
  return { waiting: counts.waiting, active: counts.active, delayed: counts.delayed };
}
