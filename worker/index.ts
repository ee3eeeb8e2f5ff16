// A Tasklane worker process: takes jobs from the queue and runs them through the task
// lifecycle. Delivery is at-least-once (bee-queue, reconciler); effects are exactly-once
// because every write is fenced by the delivery's attempt number (see src/tasks/store.ts).
process.title = 'tasklane-worker';

import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import { blobStore, imageKey } from '../src/blobs.ts';
import { startCallbackDelivery } from '../src/callbacks/delivery.ts';
import { config } from '../src/config.ts';
import { prisma } from '../src/db.ts';
import type { ResizeParams } from '../src/jobs/image-resize.ts';
import { log } from '../src/log.ts';
import { claimsWaiting, jobDuration, queueWait, startMetricsPush } from '../src/metrics.ts';
import { JobConsumer } from '../src/job-queue.ts';
import { closeRedis } from '../src/redis.ts';
import { onStopRequest } from '../src/stop-signals.ts';
import { closeQueue } from '../src/tasks/queue.ts';
import { publishChange } from '../src/tasks/events.ts';
import { removeBlobs } from '../src/tasks/images.ts';
import { retryDelayMs } from '../src/tasks/lifecycle.ts';
import { startReconciler } from '../src/tasks/reconciler.ts';
import { wakeWaiting } from '../src/tasks/running-slots.ts';
import * as store from '../src/tasks/store.ts';
import { StorageUnavailable } from '../src/storage/index.ts';
import { withTimeout } from '../src/timeout.ts';
import { ExecutorCrashed, ExecutorPool, JobTimedOut, PermanentJobError, SourceGone, StoreUnavailableJobError } from './executor-pool.ts';
import { startLivenessCheck } from './liveness.ts';

/** Progress writes are throttled: at most one per task per this many ms. */
const PROGRESS_INTERVAL_MS = 100;

let pool: ExecutorPool | undefined;
const executors = () => (pool ??= new ExecutorPool(config.workerConcurrency));
const inFlight = new Map<string, { attempt: number; abort: AbortController }>();
let shuttingDown = false;

async function publish(task: store.TaskRow | null) {
  if (task) await publishChange(task);
  return task;
}

/**
 * Deliveries in a row that this process gave back because the blob store was down: the
 * backoff of the next one grows with it (up to retryDelayMs' cap), so a long outage costs a
 * task one attempt every 30 s at most, and none of its MAX_ATTEMPTS. A job done resets it.
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
  await publish(task);
  const attempt = task.attempts;
  const endTimer = jobDuration.startTimer({ job_definition: task.jobDefinition });
  let outcome = 'stopped';
  // Both instants are PostgreSQL's clock: entering QUEUED and the claim (updatedAt).
  queueWait.observe({ job_definition: task.jobDefinition }, Math.max(0, task.updatedAt.getTime() - claimed.queuedAt.getTime()) / 1000);
  const abort = new AbortController();
  inFlight.set(taskId, { attempt, abort });
  const started = performance.now();
  log.info({ taskId, attempt }, 'job started');

  // The lease says "this delivery is alive". Losing it (deleted, taken over) stops the work.
  const heartbeat = setInterval(async () => {
    try {
      if (!(await store.renewLease(taskId, attempt, config.leaseMs))) abort.abort();
    } catch (error) {
      log.warn({ taskId, err: (error as Error).message }, 'lease renewal failed');
    }
  }, Math.max(200, Math.floor(config.leaseMs / 3)));

  // The claim itself wrote progress 0, so it counts as the last write: a job shorter than
  // the interval costs no progress writes (and its watchers no extra events) at all.
  let lastProgressAt = performance.now();
  const progress = async (value: number) => {
    const now = performance.now();
    if (now - lastProgressAt < PROGRESS_INTERVAL_MS && value < 1) return;
    lastProgressAt = now;
    try {
      await publish(await store.setProgress(taskId, attempt, value, config.leaseMs));
    } catch (error) {
      log.warn({ taskId, err: (error as Error).message }, 'progress update failed');
    }
  };

  // The result's blob: written by the executor, recorded by complete(). Until complete()
  // has answered, a failure means no row points at it (so it is deleted); if complete()
  // itself fails it is unknown whether the row committed, and the blob stays.
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
        params: task.params as unknown as ResizeParams,
        maxInputPixels: config.maxInputPixels,
        maxOutputPixels: config.maxOutputPixels,
      },
      { timeoutMs: config.jobTimeoutMs, onProgress: (value) => void progress(value), signal: abort.signal },
    );
    await progress(0.9); // recorded next
    resultUnrecorded = false;
    const image = { id: resultId, storageKey: resultKey, format: result.format, width: result.width, height: result.height, byteSize: result.byteSize, sha256: result.sha256 };
    const done = await publish(await store.complete(taskId, attempt, image));
    const ms = Math.round(performance.now() - started);
    outcome = done ? 'done' : 'discarded';
    storeDownStreak = 0;
    if (done) log.info({ taskId, attempt, ms, bytes: result.byteSize }, 'job done');
    else {
      log.info({ taskId, attempt }, 'job result discarded: the task was deleted or taken over meanwhile');
      await removeBlobs([resultKey]);
    }
  } catch (error) {
    const message = (error as Error).message;
    if (resultUnrecorded) await removeBlobs([resultKey]); // the executor may have written it before it stopped
    if (error instanceof SourceGone) {
      // Only a delete removes a source: the task is DELETED already, or this fails it.
      await publish(await store.fail(taskId, message, attempt));
      outcome = 'failed';
    } else if (abort.signal.aborted && !shuttingDown) {
      log.info({ taskId, attempt }, 'job stopped: this delivery no longer owns the task');
    } else if (shuttingDown && abort.signal.aborted) {
      await publish(await store.handBack(taskId, attempt));
      outcome = 'handed_back';
      log.info({ taskId, attempt }, 'job handed back for shutdown');
    } else if (error instanceof StoreUnavailableJobError && (await storeIsDown())) {
      // The store is down (its own check fails too): the task waits for it, its attempt given back.
      storeDownStreak++;
      const task = await publish(await store.waitForStore(taskId, attempt, message, retryDelayMs(Math.min(storeDownStreak, 8))));
      outcome = 'retried';
      log.warn({ taskId, attempt, err: message, status: task?.status }, 'job attempt failed: the blob store is down; not counted');
    } else if (error instanceof PermanentJobError || error instanceof JobTimedOut) {
      await publish(await store.fail(taskId, message, attempt));
      outcome = 'failed';
      log.warn({ taskId, attempt, err: message }, 'job failed');
    } else {
      // Transient (executor crash, store or database unreachable): retry with backoff, up to MAX_ATTEMPTS.
      const reason = error instanceof ExecutorCrashed ? message : `transient error: ${message}`;
      const task =
        attempt >= config.maxAttempts
          ? await store.fail(taskId, `gave up after ${attempt} attempts: ${reason}`, attempt)
          : await store.retryLater(taskId, attempt, reason, retryDelayMs(attempt));
      await publish(task);
      outcome = task?.status === 'FAILED' ? 'failed' : 'retried';
      log.warn({ taskId, attempt, err: message, status: task?.status }, 'job attempt failed');
    }
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
