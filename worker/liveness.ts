// The end-to-end liveness check of a worker: a due task that waits in QUEUED while this
// worker has a free slot means that the way from the queue to this worker is broken
// (whatever the cause: a queue client that never connected, a job-taking loop that never
// started). It is logged, counted (tasklane_stuck_queue_detected_total) and repaired by
// rebuilding this worker's queue consumer; tasks missing from Redis altogether are the
// reconciler's (it enqueues them again).
import { config } from '../src/config.ts';
import type { JobConsumer } from '../src/job-queue.ts';
import { log } from '../src/log.ts';
import { stuckQueueChecks } from '../src/metrics.ts';
import { oldestDueQueuedMs } from '../src/tasks/store.ts';

/** Checks every STUCK_QUEUE_MS / 4; returns a stop function. */
export function startLivenessCheck(consumer: JobConsumer, busySlots: () => number, slots: number): () => void {
  let lastRepair = 0;
  let checking = false;
  const check = async () => {
    if (checking || busySlots() >= slots || Date.now() - lastRepair < config.stuckQueueMs) return;
    checking = true;
    try {
      const waitedMs = await oldestDueQueuedMs();
      if (waitedMs <= config.stuckQueueMs || busySlots() >= slots) return;
      stuckQueueChecks.inc();
      lastRepair = Date.now();
      log.warn({ waitedMs: Math.round(waitedMs), consumerRunning: consumer.running }, 'a due task waits while this worker is idle; rebuilding its queue consumer');
      await consumer.rebuild('stuck');
    } catch (error) {
      log.warn({ err: (error as Error).message }, 'liveness check failed');
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void check(), Math.max(250, Math.floor(config.stuckQueueMs / 4)));
  timer.unref();
  return () => clearInterval(timer);
}
