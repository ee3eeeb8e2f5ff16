// Watching tasks live: the domain half of the GraphQL subscriptions. A watcher subscribes
// to the owner's change channel BEFORE reading the current state (so nothing falls in
// between), yields that state first, then re-reads the task on every newer change and
// yields it in version order, never twice. Lost messages are repaired by events.ts's catch-up.
import { Repeater } from '@repeaterjs/repeater';
import { prisma } from '../db.ts';
import type { TaskStatus } from '../generated/prisma/enums.ts';
import { TaskError } from './errors.ts';
import { CATCH_UP_MARGIN_MS, onRevocation, subscribeToOwner, type TaskChange } from './events.ts';
import type { Caller } from './keys.ts';
import { isFinal } from './lifecycle.ts';
import { checkTaskId, getTask, type TaskRow } from './service.ts';
import { findTask } from './store.ts';

export class KeyRevoked extends TaskError {
  override name = 'KeyRevoked';
  constructor() {
    super('the API key was revoked');
  }
}

// Single-flight re-reads shared by every watcher in this process: when thousands watch
// one task, a change costs one query, not thousands.
//
// A re-read may be shared only if it STARTED after the signal (hint or resync) that asks
// for it: a hint is published after its change committed, so such a read sees that change
// (or a newer one). Order is kept with one process-wide counter, not clocks or versions:
// a version-based rule would let a resync reuse a read that began before the connection
// came back, or reuse a stale read for a version it never saw (and miss a final state).
let clock = 0;
/** A point in this process's order of signals and reads. */
export const now = () => ++clock;
const reads = new Map<string, { startedAt: number; promise: Promise<TaskRow | null> }>();
function readTask(id: string, signalledAt: number): Promise<TaskRow | null> {
  const current = reads.get(id);
  if (current && current.startedAt > signalledAt) return current.promise;
  const entry = { startedAt: now(), promise: findTask(id) };
  reads.set(id, entry);
  const forget = () => reads.get(id) === entry && reads.delete(id);
  // Keep a settled read briefly for late watchers; any newer signal asks for a newer read.
  entry.promise.then(() => setTimeout(forget, 1000).unref(), forget);
  return entry.promise;
}

type Signal = { kind: 'change'; change: TaskChange } | { kind: 'revoked' };

/** Subscribes to the owner's channel (and its catch-ups) and revocations; `onSignal` gets them all. */
async function listen(caller: Caller, onSignal: (signal: Signal) => void): Promise<() => void> {
  const offChange = await subscribeToOwner(caller.owner, (change) => onSignal({ kind: 'change', change }));
  const offRevoked = await onRevocation((name) => name === caller.owner && onSignal({ kind: 'revoked' }));
  return () => {
    offChange();
    offRevoked();
  };
}

/**
 * The task's current state, then every newer state, until DONE, FAILED or DELETED.
 * Versions strictly increase: changes that come faster than a re-read are coalesced into
 * the newest state (never an older or repeated one). Throws WrongTaskIdFormat /
 * TaskDoesNotExist before the stream starts; the stream throws KeyRevoked.
 */
export async function watchTask(caller: Caller, id: string): Promise<AsyncIterable<TaskRow>> {
  const taskId = checkTaskId(id);
  let wake: (() => void) | null = null;
  let delivered = 0; // version last pushed
  let signalledAt = 0; // when the newest unhandled signal came (see readTask)
  let dirty = false;
  let revoked = false;
  const unlisten = await listen(caller, (signal) => {
    if (signal.kind === 'change' && (signal.change.id !== taskId || signal.change.version <= delivered)) return;
    if (signal.kind === 'revoked') revoked = true;
    signalledAt = now();
    dirty = true;
    wake?.();
  });
  let first: TaskRow;
  try {
    first = await getTask(caller, taskId);
  } catch (error) {
    unlisten();
    throw error;
  }
  return new Repeater<TaskRow>(async (push, stop) => {
    let stopping = false;
    stop.then(() => {
      stopping = true;
      wake?.();
    });
    try {
      let task = first;
      delivered = task.version;
      await push(task);
      while (!stopping && !isFinal(task.status)) {
        if (!dirty) await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
        if (stopping) break;
        if (revoked) throw new KeyRevoked();
        dirty = false;
        const fresh = await readTask(taskId, signalledAt);
        if (!fresh || fresh.ownerId !== caller.owner) break;
        if (fresh.version > task.version) {
          task = fresh;
          delivered = task.version;
          await push(task);
        }
      }
    } finally {
      unlisten();
    }
    stop(); // a Repeater ends only when told to
  });
}

/**
 * Every change of the caller's tasks (optionally only those now in `statuses`), each task's
 * states in strictly increasing versions (coalesced like watchTask's).
 */
export async function watchTasks(caller: Caller, statuses: TaskStatus[] | null | undefined): Promise<AsyncIterable<TaskRow>> {
  const filter = statuses?.length ? new Set(statuses) : null;
  const pending = new Map<string, number>(); // task id → when its newest hint came
  let revoked = false;
  let wake: (() => void) | null = null;
  const seen = new Map<string, number>(); // task id → version last pushed (bounded)
  const unlisten = await listen(caller, (signal) => {
    if (signal.kind === 'change') {
      if (filter && !filter.has(signal.change.status)) return;
      if ((seen.get(signal.change.id) ?? 0) >= signal.change.version) return; // delivered already
      pending.set(signal.change.id, now());
    } else revoked = true;
    wake?.();
  });
  // Changes are what happens from here on, not what the catch-up re-reads from before
  // (it hands over every change of its window as if it were new). The database's clock
  // dates them. A task changed more than the margin before `since` committed before we
  // read: old. One changed within the margin may still have been uncommitted, so what was
  // committed then is read here, in the same statement: only versions newer than those count.
  let since: Date;
  let before: Map<string, number>; // task id → its version when we started (changed within the margin)
  try {
    const [row] = await prisma.$queryRaw<{ since: Date; before: Record<string, number> }[]>`
      SELECT now() AS since, COALESCE((
        SELECT jsonb_object_agg("id", "version") FROM "Task"
        WHERE "ownerId" = ${caller.owner} AND "updatedAt" >= now() - make_interval(secs => ${CATCH_UP_MARGIN_MS / 1000})
      ), '{}'::jsonb) AS before`;
    since = row.since;
    before = new Map(Object.entries(row.before));
  } catch (error) {
    unlisten();
    throw error;
  }
  const oldest = since.getTime() - CATCH_UP_MARGIN_MS;
  return new Repeater<TaskRow>(async (push, stop) => {
    let stopping = false;
    stop.then(() => {
      stopping = true;
      wake?.();
    });
    const deliver = async (task: TaskRow | null) => {
      if (!task || task.ownerId !== caller.owner) return;
      if (task.updatedAt.getTime() < oldest || task.version <= (before.get(task.id) ?? 0)) return; // from before we started
      if (filter && !filter.has(task.status)) return;
      if ((seen.get(task.id) ?? 0) >= task.version) return;
      if (seen.size > 10_000) seen.delete(seen.keys().next().value!);
      seen.set(task.id, task.version);
      await push(task);
    };
    try {
      while (!stopping) {
        if (pending.size === 0 && !revoked) await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
        if (stopping) break;
        if (revoked) throw new KeyRevoked();
        const batch = [...pending];
        pending.clear();
        for (const [id, signalledAt] of batch) await deliver(await readTask(id, signalledAt));
      }
    } finally {
      unlisten();
    }
    stop(); // a Repeater ends only when told to
  });
}
