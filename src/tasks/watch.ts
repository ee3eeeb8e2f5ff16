// Watching tasks live: the domain half of the GraphQL subscriptions. A watcher subscribes
// to the owner's change channel BEFORE reading the current state (so nothing falls in
// between), yields that state first, then re-reads the task on every newer change and
// yields it in version order, never twice. After a pub/sub reconnect it re-reads anyway.
import { Repeater } from '@repeaterjs/repeater';
import { prisma } from '../db.ts';
import type { TaskStatus } from '../generated/prisma/enums.ts';
import { TaskError } from './errors.ts';
import { onResync, onRevocation, subscribeToOwner, type TaskChange } from './events.ts';
import type { Caller } from './keys.ts';
import { isFinal } from './lifecycle.ts';
import { checkTaskId, getTask, type TaskRow } from './service.ts';

export class KeyRevoked extends TaskError {
  override name = 'KeyRevoked';
  constructor() {
    super('the API key was revoked');
  }
}

// Single-flight re-reads shared by every watcher in this process: when thousands watch
// one task, a change costs one query, not thousands.
const reads = new Map<string, { version: number; promise: Promise<TaskRow | null> }>();
function readTask(id: string, atLeastVersion: number): Promise<TaskRow | null> {
  const current = reads.get(id);
  if (current && current.version >= atLeastVersion) return current.promise;
  const promise = prisma.task.findUnique({ where: { id } });
  const entry = { version: atLeastVersion, promise };
  reads.set(id, entry);
  promise.then(
    (task) => {
      if (task && reads.get(id) === entry) entry.version = Math.max(entry.version, task.version);
    },
    () => reads.get(id) === entry && reads.delete(id),
  );
  // Forget the read shortly after; a later change asks for a newer version anyway.
  setTimeout(() => reads.get(id) === entry && reads.delete(id), 1000).unref();
  return promise;
}

type Signal = { kind: 'change'; change: TaskChange } | { kind: 'resync' } | { kind: 'revoked' };

/** Subscribes to the owner's channel, resyncs and revocations; `onSignal` gets them all. */
async function listen(caller: Caller, onSignal: (signal: Signal) => void): Promise<() => void> {
  const offChange = await subscribeToOwner(caller.owner, (change) => onSignal({ kind: 'change', change }));
  const offResync = onResync(() => onSignal({ kind: 'resync' }));
  const offRevoked = await onRevocation((name) => name === caller.owner && onSignal({ kind: 'revoked' }));
  return () => {
    offChange();
    offResync();
    offRevoked();
  };
}

/**
 * The task's current state, then every change, until DONE, FAILED or DELETED.
 * Throws WrongTaskIdFormat / TaskDoesNotExist before the stream starts.
 */
export async function watchTask(caller: Caller, id: string): Promise<AsyncIterable<TaskRow>> {
  const taskId = checkTaskId(id);
  let wake: (() => void) | null = null;
  let newest = 0; // highest version announced (0: re-read unconditionally)
  let dirty = false;
  let revoked = false;
  const unlisten = await listen(caller, (signal) => {
    if (signal.kind === 'change' && signal.change.id !== taskId) return;
    if (signal.kind === 'revoked') revoked = true;
    if (signal.kind === 'change') newest = Math.max(newest, signal.change.version);
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
      await push(task);
      while (!stopping && !isFinal(task.status)) {
        if (!dirty) await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
        if (stopping) break;
        if (revoked) throw new KeyRevoked();
        dirty = false;
        const fresh = await readTask(taskId, Math.max(newest, task.version + 1));
        if (!fresh || fresh.ownerId !== caller.owner) break;
        if (fresh.version > task.version) {
          task = fresh;
          await push(task);
        }
      }
    } finally {
      unlisten();
    }
    stop(); // a Repeater ends only when told to
  });
}

/** Every change of the caller's tasks (optionally only those now in `statuses`). */
export async function watchTasks(caller: Caller, statuses: TaskStatus[] | null | undefined): Promise<AsyncIterable<TaskRow>> {
  const filter = statuses?.length ? new Set(statuses) : null;
  const pending = new Map<string, number>(); // task id → newest announced version
  let resync = false;
  let revoked = false;
  let wake: (() => void) | null = null;
  const unlisten = await listen(caller, (signal) => {
    if (signal.kind === 'change') {
      if (filter && !filter.has(signal.change.status)) return;
      pending.set(signal.change.id, Math.max(pending.get(signal.change.id) ?? 0, signal.change.version));
    } else if (signal.kind === 'resync') resync = true;
    else revoked = true;
    wake?.();
  });
  const seen = new Map<string, number>(); // task id → version last pushed (bounded)
  let since = new Date();
  return new Repeater<TaskRow>(async (push, stop) => {
    let stopping = false;
    stop.then(() => {
      stopping = true;
      wake?.();
    });
    const deliver = async (task: TaskRow | null) => {
      if (!task || task.ownerId !== caller.owner) return;
      if (filter && !filter.has(task.status)) return;
      if ((seen.get(task.id) ?? 0) >= task.version) return;
      if (seen.size > 10_000) seen.delete(seen.keys().next().value!);
      seen.set(task.id, task.version);
      await push(task);
    };
    try {
      while (!stopping) {
        if (pending.size === 0 && !resync && !revoked) await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
        if (stopping) break;
        if (revoked) throw new KeyRevoked();
        if (resync) {
          // Messages may have been lost: re-read what changed since we last looked.
          resync = false;
          const from = since;
          since = new Date();
          const changed = await prisma.task.findMany({
            where: { ownerId: caller.owner, updatedAt: { gte: new Date(from.getTime() - 5000) } },
            orderBy: { updatedAt: 'asc' },
            take: 1000,
          });
          for (const task of changed) await deliver(task);
        }
        const batch = [...pending];
        pending.clear();
        for (const [id, version] of batch) await deliver(await readTask(id, version));
      }
    } finally {
      unlisten();
    }
    stop(); // a Repeater ends only when told to
  });
}
