// A pool of executor child processes, one job each at a time. A job that outlives its
// timeout has its executor killed (the work really stops) and replaced.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { log } from '../src/log.ts';
import type { ExecutorMessage, ExecutorRequest } from './executor.ts';

const EXECUTOR = fileURLToPath(new URL('./executor.ts', import.meta.url));
/** Scratch directories are named after the worker that made them: tasklane-executor-<worker pid>-… */
const SCRATCH_PREFIX = `tasklane-executor-${process.pid}-`;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes what workers that died without cleaning up (SIGKILL, a crash) left in the temp directory. */
function sweepOrphanedScratch() {
  let names: string[] = [];
  try {
    names = readdirSync(os.tmpdir());
  } catch {
    return;
  }
  for (const name of names) {
    const owner = /^tasklane-executor-(\d+)-/.exec(name)?.[1];
    if (owner && !isAlive(Number(owner))) rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true });
  }
}
/** An executor that has not said "ready" this long after its start is given up on. */
const START_TIMEOUT_MS = 60_000;

export class JobTimedOut extends Error {
  override name = 'JobTimedOut';
}
/** The executor died mid-job (crash, OOM kill): transient, worth a retry. */
export class ExecutorCrashed extends Error {
  override name = 'ExecutorCrashed';
}
/** The job itself failed for a reason a retry cannot fix (bad image, bad parameters). */
export class PermanentJobError extends Error {
  override name = 'PermanentJobError';
}
/** The source image is not in the store (its task was deleted meanwhile). */
export class SourceGone extends Error {
  override name = 'SourceGone';
}
/** The job failed for a reason that may pass: worth a retry. */
export class TransientJobError extends Error {
  override name = 'TransientJobError';
}
/** The blob store could not be used (unreachable, read-only, full): transient too. */
export class StoreUnavailableJobError extends TransientJobError {
  override name = 'StoreUnavailableJobError';
}

/** `promise`, or a rejection as soon as `signal` aborts. */
function unlessAborted<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('aborted'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export type JobResult = Extract<ExecutorMessage, { type: 'done' }>;

interface Slot {
  child: ChildProcess;
  /** The executor's scratch directory (its source copy and result file): removed with it. */
  scratch: string;
  /** Resolves once the child can take a job; rejects if it dies or hangs first. */
  ready: Promise<void>;
  busy: boolean;
}

export class ExecutorPool {
  private slots: Slot[] = [];
  private waiting: ((slot: Slot) => void)[] = [];
  private closed = false;

  constructor(size: number) {
    sweepOrphanedScratch();
    for (let i = 0; i < size; i++) {
      const slot = { busy: false } as Slot;
      this.spawn(slot);
      this.slots.push(slot);
    }
  }

  private spawn(slot: Slot) {
    // Inherits the parent's execArgv (the TypeScript loader) and environment (the store's
    // configuration). IPC carries keys, parameters and metadata only.
    slot.scratch = mkdtempSync(path.join(os.tmpdir(), SCRATCH_PREFIX));
    const child = fork(EXECUTOR, [slot.scratch], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    slot.child = child;
    slot.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => done(new ExecutorCrashed(`the executor did not start in ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      const onMessage = (message: ExecutorMessage) => message.type === 'ready' && done(null);
      const onExit = (code: number | null, signal: string | null) =>
        done(new ExecutorCrashed(`the executor process died while starting (${signal ?? `exit code ${code}`})`));
      const done = (error: Error | null) => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        if (error) reject(error);
        else resolve();
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
    slot.ready.catch(() => {}); // observed by the job that needs it
  }

  private acquire(): Promise<Slot> {
    const free = this.slots.find((slot) => !slot.busy);
    if (free) {
      free.busy = true;
      return Promise.resolve(free);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(slot: Slot) {
    const next = this.waiting.shift();
    if (next) next(slot);
    else slot.busy = false;
  }

  /** Kills the slot's executor (the work stops for real) and starts a fresh one. */
  private replace(slot: Slot, why: string) {
    const old = slot.child;
    old.removeAllListeners();
    old.kill('SIGKILL');
    // What a killed job left (a half-written result): libvips may still hold it open until
    // the kill lands, which does not keep it from being unlinked.
    rmSync(slot.scratch, { recursive: true, force: true });
    log.info({ executorPid: old.pid, why }, 'executor killed and replaced');
    if (!this.closed) this.spawn(slot);
  }

  /** Runs one job; `signal` aborts it (the executor is killed and replaced). */
  async run(
    request: ExecutorRequest,
    options: { timeoutMs: number; onProgress?: (progress: number, stage: string) => void; signal?: AbortSignal },
  ): Promise<JobResult> {
    const slot = await this.acquire();
    try {
      try {
        // A job stopped while its executor still starts (a worker shutting down right after
        // taking its first job, on a busy host) stops now, not once the executor is up.
        await unlessAborted(slot.ready, options.signal);
      } catch (error) {
        if (options.signal?.aborted) throw new Error('aborted');
        this.replace(slot, 'failed to start');
        throw error;
      }
      if (options.signal?.aborted) throw new Error('aborted');
      const { child } = slot;
      return await new Promise<JobResult>((resolve, reject) => {
        const finish = (error: Error | null, result?: JobResult) => {
          clearTimeout(timer);
          child.off('message', onMessage);
          child.off('exit', onExit);
          options.signal?.removeEventListener('abort', onAbort);
          if (error) reject(error);
          else resolve(result!);
        };
        const onMessage = (message: ExecutorMessage) => {
          if (message.type === 'progress') options.onProgress?.(message.progress, message.stage);
          else if (message.type === 'done') finish(null, message);
          else if (message.type === 'error') {
            const Kind = { permanent: PermanentJobError, gone: SourceGone, unavailable: StoreUnavailableJobError, transient: TransientJobError }[message.kind];
            finish(new Kind(message.message));
          }
        };
        const onExit = (code: number | null, signal: string | null) => {
          this.replace(slot, 'died');
          finish(new ExecutorCrashed(`the executor process died (${signal ?? `exit code ${code}`})`));
        };
        const onAbort = () => {
          this.replace(slot, 'job aborted');
          finish(new Error('aborted'));
        };
        const timer = setTimeout(() => {
          this.replace(slot, 'job timed out');
          finish(new JobTimedOut(`timed out after ${options.timeoutMs} ms (JOB_TIMEOUT_MS); the work was stopped`));
        }, options.timeoutMs);
        child.on('message', onMessage);
        child.once('exit', onExit);
        options.signal?.addEventListener('abort', onAbort, { once: true });
        child.send(request);
      });
    } finally {
      this.release(slot);
    }
  }

  close() {
    this.closed = true;
    for (const slot of this.slots) {
      slot.child.removeAllListeners();
      slot.child.kill('SIGKILL');
      rmSync(slot.scratch, { recursive: true, force: true });
    }
  }
}
