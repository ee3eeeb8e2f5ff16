// The reconciler makes PostgreSQL's view come true whatever Redis forgot or workers did:
//  - RUNNING tasks whose lease expired (worker killed, hung, cut off) are retried with
//    backoff, or FAILED once they have had MAX_ATTEMPTS deliveries;
//  - QUEUED tasks that are due but have no job in Redis (flushed, enqueue failed) are
//    enqueued again;
//  - tasks waiting for a running slot of their key (MAX_RUNNING_TASKS_PER_KEY) whose key has
//    a free one are enqueued (see running-slots.ts);
//  - expired two-step uploads are removed with their blobs (see uploads.ts);
//  - expired idempotency keys are removed, a batch per sweep (see idempotency.ts).
// Every worker process runs it, but each sweep holds a transaction-scoped advisory lock,
// so one sweep runs at a time across all hosts. Beside it, on its own clock and without the
// lock, retention removes what outlived RESULT_TTL_MS / TASK_TTL_MS and blobs no row points
// at (see retention.ts).
import { config } from '../config.ts';
import { prisma } from '../db.ts';
import { log } from '../log.ts';
import { sweepExpiredIdempotencyKeys } from './idempotency.ts';
import { enqueue, jobsPresent } from './queue.ts';
import { startRetention } from './retention.ts';
import { wakeAllWaiting } from './running-slots.ts';
import * as store from './store.ts';
import { sweepExpiredUploadsInBackground } from './uploads.ts';

const RECONCILER_LOCK_KEY = 72_616_002;
/** A freshly QUEUED task gets this long to reach Redis the normal way before we step in. */
const ENQUEUE_GRACE_MS = 2000;
const BATCH = 500;
const LOCK_IDLE_TIMEOUT_MS = 5000;

export interface SweepReport {
  retried: number;
  failed: number;
  enqueued: number;
  /** Tasks waiting for a running slot of their key that were enqueued. */
  woken: number;
}

export async function sweep(): Promise<SweepReport | null> {
  // The lock is held by an open transaction while the sweep runs; the actual work uses
  // other connections (each transition commits on its own, as always).
  return prisma.$transaction(
    async (tx) => {
      // A holder that freezes mid-sweep (SIGSTOP, a VM pause, a cut network) must not
      // keep the lock and so block every recovery: PostgreSQL ends its session when the
      // transaction sits idle this long. The lock is for efficiency only (every change is
      // a conditional transition), so a sweep outliving it is harmless.
      await tx.$executeRaw`SELECT set_config('idle_in_transaction_session_timeout', ${`${LOCK_IDLE_TIMEOUT_MS}ms`}, true)`;
      const [{ locked }] = await tx.$queryRaw<{ locked: boolean }[]>`SELECT pg_try_advisory_xact_lock(${RECONCILER_LOCK_KEY}) AS locked`;
      if (!locked) return null;
      const report: SweepReport = { retried: 0, failed: 0, enqueued: 0, woken: 0 };
      await sweepExpiredIdempotencyKeys(BATCH); // first: it needs no Redis, which the steps below do
      for (const { id, attempts } of await store.findExpiredLeases(BATCH)) {
        const task = await store.retryOrFail(id, attempts, 'the worker was lost (crashed, killed or stalled)');
        if (!task) continue;
        task.status === 'FAILED' ? report.failed++ : report.retried++;
        log.warn({ taskId: id, attempts, status: task.status }, 'recovered a task whose worker was lost');
      }
      // Slots freed without a worker to say so (a lost worker above, a deleted running task, a raised cap).
      report.woken = await wakeAllWaiting(BATCH);
      const due = (await store.findDueQueued(ENQUEUE_GRACE_MS, BATCH)).map((row) => row.id);
      const present = await jobsPresent(due);
      for (const id of due) {
        if (present.has(id)) continue;
        if (await enqueue(id)) report.enqueued++;
        else break; // Redis is unwell: the next sweep tries again, rather than waiting on each task
      }
      if (report.enqueued) log.info({ count: report.enqueued }, 're-enqueued queued tasks missing from Redis');
      sweepExpiredUploadsInBackground();
      return report;
    },
    { timeout: 60_000, maxWait: 5000 },
  );
}

/** Runs sweeps forever (until the returned stop function is called). */
export function startReconciler(intervalMs = config.reconcileIntervalMs): () => Promise<void> {
  let stopped = false;
  let running: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout;
  // During an outage every sweep fails the same way: say so on the first failure, then once a
  // minute, and say when sweeps work again — not once per interval per worker.
  let failures = 0;
  const everyNth = Math.max(1, Math.round(60_000 / intervalMs));
  const retention = startRetention();
  const tick = () => {
    retention.tick();
    running = sweep()
      .then(() => {
        if (failures) log.info({ failures }, 'reconciler sweeps work again');
        failures = 0;
      })
      .catch((error) => {
        if (failures++ % everyNth === 0) log.warn({ err: (error as Error).message, failures }, 'reconciler sweep failed');
      })
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, intervalMs);
      });
  };
  timer = setTimeout(tick, intervalMs);
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
    await retention.stop();
  };
}
