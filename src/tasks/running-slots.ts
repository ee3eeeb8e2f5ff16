// MAX_RUNNING_TASKS_PER_KEY: no key (tenant) runs more than that many tasks at once, across
// every worker on every host, while another key's task waits its turn — so one key with a
// thousand tasks cannot take every worker from others, yet a key alone uses every idle one
// (the cap is work-conserving).
//
// The cap is enforced by the claim itself (store.claim, under the owner's lock in PostgreSQL).
// A task over the cap stays QUEUED, spends no attempt, and is marked waitingForSlot; its
// queue job is dropped, and the reconciler does not enqueue it again, so it costs nothing
// while it waits. When a slot of its owner may have freed, wakeWaiting takes as many of the
// owner's waiting tasks as it has free slots (all, when nobody else waits), oldest first, and
// enqueues them: the worker
// after every job it ran, and the reconciler on every sweep for all owners (for slots freed
// without a worker to tell: a worker killed mid-job, a running task deleted, a raised cap).
import { config } from '../config.ts';
import { log } from '../log.ts';
import { enqueue } from './queue.ts';
import * as store from './store.ts';

/** Enqueues the waiting tasks of `ownerId` that now have a free slot; resolves with how many. */
export async function wakeWaiting(ownerId: string): Promise<number> {
  const ids = await store.wakeWaiting(ownerId, config.maxRunningTasksPerKey);
  // A failed enqueue (Redis down) is not lost: the task is an ordinary QUEUED one again, which
  // the reconciler enqueues once Redis answers.
  for (const id of ids) await enqueue(id);
  if (ids.length) log.debug({ owner: ownerId, taskIds: ids }, 'woke tasks waiting for a running slot');
  return ids.length;
}

/** wakeWaiting for every owner with waiting tasks (the reconciler's sweep). */
export async function wakeAllWaiting(limit: number): Promise<number> {
  let woken = 0;
  for (const owner of await store.ownersWaiting(limit)) woken += await wakeWaiting(owner);
  return woken;
}
