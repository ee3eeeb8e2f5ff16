// A Tasklane worker process: takes jobs from the queue; for each, claim → run the job →
// report the outcome, each step one transition of the task lifecycle (src/tasks/store.ts:
// it writes, appends its event and publishes). Delivery is at-least-once (bee-queue,
// reconciler); effects are exactly-once because every write is fenced by the delivery's
// attempt number.
process.title = 'tasklane-worker';

import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import { blobStore, imageKey } from '../src/blobs.ts';
import { startCallbackDelivery } from '../src/callbacks/delivery.ts';
import { config } from '../src/config.ts';
import { prisma } from '../src/db.ts';
import { log } from '../src/log.ts';
import { claimsWaiting, jobDuration, queueWait, startMetricsPush } from '../src/metrics.ts';
import { JobConsumer } from '../src/job-queue.ts';
import { closeRedis } from '../src/redis.ts';
import { onStopRequest } from '../src/stop-signals.ts';
import { closeQueue } from '../src/tasks/queue.ts';
import { removeBlobs } from '../src/tasks/images.ts';
import { startReconciler } from '../src/tasks/reconciler.ts';
import { wakeWaiting } from '../src/tasks/running-slots.ts';
import * as store from '../src/tasks/store.ts';
import type { StoredImage } from '../src/tasks/store.ts';
import { StorageUnavailable } from '../src/storage/index.ts';
import { retryDelayMs } from '../src/tasks/lifecycle.ts';
import { withTimeout } from '../src/timeout.ts';
import { ExecutorCrashed, ExecutorPool, JobTimedOut, PermanentJobError, SourceGone, StoreUnavailableJobError } from './executor-pool.ts';
import { startLivenessCheck } from './liveness.ts';

/** Progress writes are throttled: at most one per task per this many ms. */
const PROGRESS_INTERVAL_MS = 100;

let pool: ExecutorPool | undefined;
const executors = () => (pool ??= new ExecutorPool(config.workerConcurrency));
const inFlight = new Map<string, { attempt: number; abort: AbortController }>();
let shuttingDown = false;

/** How a delivery ended: each outcome is one call into the task lifecycle (see report). */
type Outcome =
  /** The result's blob is written; the task is to become DONE with it. */
  | { kind: 'done'; image: StoredImage }
  /** A permanent failure (bad image, pixel limit, timeout, source gone): FAILED now. */
  | { kind: 'failed'; error: string }
  /**
   * A transient failure (executor crash, store or database unreachable): retried or FAILED;
   * `storeUnavailable`: the blob store failed the job (uncounted if it is down for everyone).
   */
  | { kind: 'transient'; reason: string; storeUnavailable?: boolean }
  /** Stopped for shutdown: the task goes back to the queue, the delivery not counted. */
  | { kind: 'handed_back' }
  /** Stopped because this delivery lost the task (deleted, taken over): nothing to write. */
  | { kind: 'stopped' };

/** The job metric's outcome label. */
type JobOutcome = 'done' | 'discarded' | 'failed' | 'retried' | 'handed_back' | 'stopped';

/**
 * Deliveries in a row that this process gave back because the blob store was down: the
 * backoff of the next one grows with it (up to retryDelayMs' cap), so a long outage costs a
 * task one delivery every 30 s at most, and none of its MAX_ATTEMPTS. A job done resets it.
 */
let storeDownStreak = 0;

/** Whether the blob store fails its own write check now: down for everyone, not just for one job. */
async function storeIsDown(): Promise<boolean> {
  try {
    await withTimeout(blobStore().check(), 3 * config.storageTimeoutMs, 'no answer from the blob store');
    return false;
  } catch (error) {
    log.warn({ err: (error as Error).message }, 'blob store check failed');
    return error instanceof StorageUnavailable || (error as Error).name === 'TimedOut';
  }
}

/** One delivery of a task to this worker: `attempt` fences its every write. */
interface Delivery {
  taskId: string;
  attempt: number;
  signal: AbortSignal;
  started: number;
}

export async function runJob(taskId: string): Promise<void> {
  const claimed = await store.claim(taskId, config.leaseMs, config.maxRunningTasksPerKey);
  if (claimed === 'waiting') {
    // Its owner has MAX_RUNNING_TASKS_PER_KEY tasks running: this job ends here, the task stays
    // QUEUED (no attempt spent) and is enqueued again when a slot frees (running-slots.ts).
    claimsWaiting.inc();
    log.debug({ taskId }, 'job deferred: its key is at MAX_RUNNING_TASKS_PER_KEY');
    return;
  }
  if (!claimed) {
    log.debug({ taskId }, 'job skipped: task is not QUEUED (done, deleted or running elsewhere)');
    return;
  }
  const { task } = claimed;
  const attempt = task.attempts;
  const endTimer = jobDuration.startTimer({ job_definition: task.jobDefinition });
  let outcome: JobOutcome = 'stopped';
  // Both instants are PostgreSQL's clock: entering QUEUED and the claim (updatedAt).
  queueWait.observe({ job_definition: task.jobDefinition }, Math.max(0, task.updatedAt.getTime() - claimed.queuedAt.getTime()) / 1000);
  const abort = new AbortController();
  inFlight.set(taskId, { attempt, abort });
  const delivery: Delivery = { taskId, attempt, signal: abort.signal, started: performance.now() };
  log.info({ taskId, attempt }, 'job started');

  // The lease says "this delivery is alive". Losing it (deleted, taken over) stops the work.
  const heartbeat = setInterval(async () => {
    try {
      if (!(await store.renewLease(taskId, attempt, config.leaseMs))) abort.abort();
    } catch (error) {
      log.warn({ taskId, err: (error as Error).message }, 'lease renewal failed');
    }
  }, Math.max(200, Math.floor(config.leaseMs / 3)));

  try {
    outcome = await report(delivery, await execute(delivery, claimed));
  } finally {
    endTimer({ outcome });
    clearInterval(heartbeat);
    inFlight.delete(taskId);
    // This delivery's slot is free (whatever the outcome): the owner's next waiting task may run.
    await wakeWaiting(task.ownerId).catch((error: Error) =>
      log.warn({ taskId, err: error.message }, 'could not wake tasks waiting for a slot; the reconciler will'),
    );
  }
}

/** Runs the job of a claimed task in an executor; every failure becomes an outcome. */
async function execute(delivery: Delivery, claimed: store.Claim): Promise<Outcome> {
  const { taskId, attempt, signal } = delivery;
  // At most one progress write per interval. The claim itself wrote progress 0, so it counts
  // as the last write: a job shorter than the interval costs no progress writes (and its
  // watchers no extra events) at all. A value that comes within the interval is not lost: the
  // newest one is written when the interval ends, if the job still runs then. (setProgress
  // only ever raises the value, so a late write cannot move it back.)
  let lastProgressAt = performance.now();
  let pendingProgress: number | null = null;
  let progressTimer: NodeJS.Timeout | undefined;
  const writeProgress = async (value: number) => {
    lastProgressAt = performance.now();
    try {
      await store.setProgress(taskId, attempt, value, config.leaseMs);
    } catch (error) {
      log.warn({ taskId, err: (error as Error).message }, 'progress update failed');
    }
  };
  const progress = async (value: number) => {
    const wait = PROGRESS_INTERVAL_MS - (performance.now() - lastProgressAt);
    if (wait <= 0) {
      pendingProgress = null;
      return writeProgress(value);
    }
    pendingProgress = value;
    progressTimer ??= setTimeout(() => {
      progressTimer = undefined;
      const value = pendingProgress;
      pendingProgress = null;
      if (value !== null) void writeProgress(value);
    }, wait);
  };
  const stopProgress = () => {
    clearTimeout(progressTimer);
    pendingProgress = null;
  };

  // The result's blob: written by the executor, recorded by complete() (see report). Until
  // the executor has answered, a failure means no row points at it (so it is deleted).
  const resultId = randomUUID();
  const resultKey = imageKey(resultId);
  let resultUnrecorded = false;
  try {
    if (!claimed.sourceKey) throw new SourceGone('the source image is gone');
    await progress(0.05);
    resultUnrecorded = true;
    const result = await executors().run(
      {
        sourceKey: claimed.sourceKey,
        resultKey,
        params: claimed.task.params,
        maxInputPixels: config.maxInputPixels,
        maxOutputPixels: config.maxOutputPixels,
      },
      { timeoutMs: config.jobTimeoutMs, onProgress: (value) => void progress(value), signal },
    );
    stopProgress();
    // Recorded next; like any progress, written only if the interval is over.
    if (performance.now() - lastProgressAt >= PROGRESS_INTERVAL_MS) await writeProgress(0.9);
    resultUnrecorded = false;
    const { format, width, height, byteSize, sha256 } = result;
    return { kind: 'done', image: { id: resultId, storageKey: resultKey, format, width, height, byteSize, sha256 } };
  } catch (error) {
    stopProgress();
    if (resultUnrecorded) await removeBlobs([resultKey]); // the executor may have written it before it stopped
    return failure(error, signal);
  }
}

/** What a failed run (or a failed complete()) of this delivery means for its task. */
function failure(error: unknown, signal: AbortSignal): Outcome {
  const message = (error as Error).message;
  // Only a delete removes a source: the task is DELETED already, or this fails it.
  if (error instanceof SourceGone) return { kind: 'failed', error: message };
  // Whatever the error, it follows from the stop.
  if (signal.aborted) return shuttingDown ? { kind: 'handed_back' } : { kind: 'stopped' };
  if (error instanceof PermanentJobError || error instanceof JobTimedOut) return { kind: 'failed', error: message };
  // Transient: retried with backoff, up to MAX_ATTEMPTS.
  return {
    kind: 'transient',
    reason: error instanceof ExecutorCrashed ? message : `transient error: ${message}`,
    storeUnavailable: error instanceof StoreUnavailableJobError,
  };
}

/**
 * Reports how a delivery ended: one transition of src/tasks/store.ts per outcome (it writes,
 * appends its event and publishes), fenced by the delivery's attempt, so a delivery that
 * lost the task writes nothing. Resolves with the job metric's outcome.
 */
async function report(delivery: Delivery, outcome: Outcome): Promise<JobOutcome> {
  const { taskId, attempt } = delivery;
  switch (outcome.kind) {
    case 'done': {
      let done: store.TaskRow | null;
      try {
        done = await store.complete(taskId, attempt, outcome.image);
      } catch (error) {
        // It is unknown whether the row committed, so the result's blob stays (an unreferenced
        // blob is swept later; a row without its blob would be a broken image).
        return report(delivery, failure(error, delivery.signal));
      }
      if (!done) {
        log.info({ taskId, attempt }, 'job result discarded: the task was deleted or taken over meanwhile');
        await removeBlobs([outcome.image.storageKey]);
        return 'discarded';
      }
      storeDownStreak = 0;
      log.info({ taskId, attempt, ms: Math.round(performance.now() - delivery.started), bytes: outcome.image.byteSize }, 'job done');
      return 'done';
    }
    case 'failed':
      await store.fail(taskId, outcome.error, attempt);
      log.warn({ taskId, attempt, err: outcome.error }, 'job failed');
      return 'failed';
    case 'transient': {
      if (outcome.storeUnavailable && (await storeIsDown())) {
        // Down for everyone (its own check fails too): the task waits for it, its attempt given back.
        storeDownStreak++;
        const task = await store.waitForStore(taskId, attempt, outcome.reason, retryDelayMs(Math.min(storeDownStreak, 8)));
        log.warn({ taskId, attempt, err: outcome.reason, status: task?.status }, 'job attempt failed: the blob store is down; not counted');
        return 'retried';
      }
      const task = await store.retryOrFail(taskId, attempt, outcome.reason);
      log.warn({ taskId, attempt, err: outcome.reason, status: task?.status }, 'job attempt failed');
      return task?.status === 'FAILED' ? 'failed' : 'retried';
    }
    case 'handed_back':
      await store.handBack(taskId, attempt);
      log.info({ taskId, attempt }, 'job handed back for shutdown');
      return 'handed_back';
    case 'stopped':
      log.info({ taskId, attempt }, 'job stopped: this delivery no longer owns the task');
      return 'stopped';
  }
}

/**
 * Lower priority than the API on a shared host: the CPU goes to request handling first,
 * resizing soaks up the rest. On Linux a nice value belongs to a thread, so every thread
 * that exists now is set; threads and executor processes started later inherit it.
 */
function lowerPriority(nice: number) {
  try {
    let threads: number[] = [];
    try {
      threads = readdirSync('/proc/self/task').map(Number);
    } catch {
      // not Linux: the process priority is all there is
    }
    if (threads.length) for (const tid of threads) os.setPriority(tid, nice);
    else os.setPriority(nice);
  } catch (error) {
    log.warn({ err: (error as Error).message }, 'could not set WORKER_NICE');
  }
}

async function main() {
  lowerPriority(config.workerNice);
  const consumer = new JobConsumer(config.workerConcurrency, runJob);
  // Connects in the background (Redis may be down now): the reconciler's PostgreSQL side
  // (expired leases) works without Redis.
  void consumer.start().then(() => !shuttingDown && log.info({ concurrency: config.workerConcurrency }, 'worker ready'));
  const stopLiveness = startLivenessCheck(consumer, () => inFlight.size, config.workerConcurrency);
  const stopReconciler = startReconciler();
  const stopCallbacks = startCallbackDelivery();
  const stopMetrics = startMetricsPush('worker');

  // A library promise nobody awaits that fails on a connection blip must not kill a worker
  // mid-job (that would cost its task a delivery): log it loudly and keep going.
  process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled rejection; worker keeps running'));

  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ signal, inFlight: inFlight.size }, 'worker shutting down');
    const forceAfter = setTimeout(() => {
      // Grace period over: stop the work and hand the jobs back to the queue.
      for (const job of inFlight.values()) job.abort.abort();
    }, config.shutdownGraceMs);
    // Whatever hangs (a dead Redis or PostgreSQL), the process is gone soon after the grace.
    setTimeout(() => {
      log.warn('shutdown took too long; exiting anyway');
      process.exit(1);
    }, config.shutdownGraceMs + 4000).unref();
    stopLiveness();
    const callbacksStopped = stopCallbacks(); // no new attempts; those in flight end within CALLBACK_TIMEOUT_MS
    await consumer.close(config.shutdownGraceMs + 2000);
    clearTimeout(forceAfter);
    await stopReconciler();
    await callbacksStopped;
    await stopMetrics();
    pool?.close();
    await closeQueue();
    await closeRedis();
    await prisma.$disconnect();
    process.exit(0);
  };
  onStopRequest((reason) => void shutdown(reason));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error) => {
    log.fatal({ err: error }, 'worker failed to start');
    process.exit(1);
  });
}
