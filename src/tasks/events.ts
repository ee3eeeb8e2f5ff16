// Task change notifications over Redis pub/sub, so a worker on one host reaches the
// subscribers of any API process on any host. A message is a hint carrying ids, status
// and version, never the row: receivers re-read PostgreSQL, the truth. Pub/sub may drop
// messages, so this process catches up from PostgreSQL periodically and after the subscriber
// connection comes back (catchUp below).
import { EventEmitter } from 'node:events';
import { config } from '../config.ts';
import { log } from '../log.ts';
import { pool } from '../db.ts';
import { channel, redisPubSub, subscribeChannel } from '../redis.ts';
import { withTimeout } from '../timeout.ts';
import { empty, query, sql } from '../sql.ts';
import type { TaskRow } from './store.ts';
import type { TaskStatus } from '../generated/prisma/enums.ts';

export interface TaskChange {
  id: string;
  ownerId: string;
  status: TaskStatus;
  version: number;
  progress: number;
}

const ownerTopic = (ownerId: string) => channel(`owner:${ownerId}`);
const REVOKED_TOPIC = channel('keys-revoked');
const PUBLISH_TIMEOUT_MS = 1000;

/** Publishes a change; never throws (a lost hint is repaired by resync and re-reads). */
export async function publishChange(task: TaskRow): Promise<void> {
  const change: TaskChange = {
    id: task.id,
    ownerId: task.ownerId,
    status: task.status,
    version: task.version,
    progress: task.progress,
  };
  try {
    // Bounded: a transition already committed must not wait on a sick Redis.
    await withTimeout(redisPubSub().engine.publish(ownerTopic(task.ownerId), change), PUBLISH_TIMEOUT_MS, 'no answer from Redis');
  } catch (error) {
    log.warn({ taskId: task.id, err: (error as Error).message }, 'could not publish task change');
  }
}

/** This process's listeners by owner, for the catch-up below (Redis has its own list). */
const listenersByOwner = new Map<string, Set<(change: TaskChange) => void>>();

/** Calls `listener` for every change of `ownerId`'s tasks; resolves once subscribed. */
export async function subscribeToOwner(ownerId: string, listener: (change: TaskChange) => void): Promise<() => void> {
  const { engine } = redisPubSub();
  watchReconnects();
  // The first listener dates the catch-up window: nothing before it was listened to.
  if (!caughtUpTo) {
    const [{ at }] = await query<{ at: Date }>(pool, sql`SELECT now() AS "at"`);
    caughtUpTo ??= at;
  }
  const subscriptionId = await subscribeChannel(ownerTopic(ownerId), listener);
  let listeners = listenersByOwner.get(ownerId);
  if (!listeners) listenersByOwner.set(ownerId, (listeners = new Set()));
  listeners.add(listener);
  return () => {
    engine.unsubscribe(subscriptionId);
    listeners.delete(listener);
    if (listeners.size === 0 && listenersByOwner.get(ownerId) === listeners) listenersByOwner.delete(ownerId);
    if (listenersByOwner.size === 0) caughtUpTo = null;
  };
}

/**
 * How far back a catch-up looks before the previous one, and how far before its start a
 * subscription takes a change as possibly newer than itself: a change's `updatedAt` is its
 * statement's start, not its commit, and no statement changing a task runs this long.
 */
export const CATCH_UP_MARGIN_MS = 10_000;
const CATCH_UP_PAGE = 500;
let caughtUpTo: Date | null = null;
let catchingUp: Promise<void> | null = null;
let catchUpAgain = false;

/**
 * The one way this process repairs lost change messages. A message can be lost while our
 * connection is down (pub/sub does not replay), or while it stays up: its publisher's
 * connection was cut, or it died between its commit and its publish. So every
 * LIVE_RESYNC_INTERVAL_MS, and after the subscriber connection comes back, this process asks
 * PostgreSQL which tasks of the owners it has listeners for changed since the previous
 * catch-up (less the margin), oldest first in pages, and hands those to the listeners as if
 * Redis had: each watcher re-reads only what is newer than what it delivered, and only
 * changes newer than its own start. One query per page, whatever the number of subscribers.
 * A request while one runs runs again after it (the running one may have read too early).
 */
export function catchUp(): Promise<void> {
  if (catchingUp) {
    catchUpAgain = true;
    return catchingUp;
  }
  catchingUp = (async () => {
    do {
      catchUpAgain = false;
      await catchUpOnce();
    } while (catchUpAgain);
  })().finally(() => {
    catchingUp = null;
  });
  return catchingUp;
}

async function catchUpOnce() {
  if (listenersByOwner.size === 0 || !caughtUpTo) return;
  try {
    const [{ at }] = await query<{ at: Date }>(pool, sql`SELECT now() AS "at"`);
    const since = new Date(caughtUpTo.getTime() - CATCH_UP_MARGIN_MS);
    let after: { updatedAt: Date; id: string } | null = null;
    for (;;) {
      const owners = [...listenersByOwner.keys()];
      if (owners.length === 0) return;
      const page: (TaskChange & { updatedAt: Date })[] = await query<TaskChange & { updatedAt: Date }>(pool, sql`
        SELECT "id", "ownerId", "status", "version", "progress", "updatedAt" FROM "Task"
        WHERE "ownerId" = ANY(${owners}::text[]) AND "updatedAt" >= ${since}::timestamptz
          ${after ? sql`AND ("updatedAt", "id") > (${after.updatedAt}::timestamptz, ${after.id}::uuid)` : empty}
        ORDER BY "updatedAt", "id" LIMIT ${CATCH_UP_PAGE}`);
      for (const { updatedAt: _, ...change } of page) for (const listener of listenersByOwner.get(change.ownerId) ?? []) listener(change);
      if (page.length < CATCH_UP_PAGE) break;
      after = page.at(-1)!;
    }
    if (caughtUpTo) caughtUpTo = at;
  } catch (error) {
    log.warn({ err: (error as Error).message }, 'live catch-up skipped');
  }
}

const local = new EventEmitter().setMaxListeners(0);
let watching = false;

function watchReconnects() {
  if (watching) return;
  watching = true;
  if (config.liveResyncIntervalMs > 0) setInterval(() => void catchUp(), config.liveResyncIntervalMs).unref();
  const { subscriber } = redisPubSub();
  let wasReady = subscriber.status === 'ready';
  subscriber.on('ready', () => {
    if (!wasReady) {
      wasReady = true;
      return;
    }
    // ioredis emits 'ready' BEFORE it re-sends SUBSCRIBE for our channels (autoResubscribe).
    // Re-reading now could miss a change published between our read and the resubscription,
    // so wait for a PING queued after those SUBSCRIBEs: replies come in order, so when it
    // answers, Redis delivers to us again. Then catch up on what was missed meanwhile.
    setImmediate(() => {
      subscriber.ping().then(
        () => {
          log.info('pub/sub connection is back: resynchronising open subscriptions');
          void catchUp();
        },
        // Lost again before it answered: the next 'ready' resynchronises.
        (error: Error) => log.warn({ err: error.message }, 'pub/sub reconnect check failed'),
      );
    });
  });
}

export async function publishRevocation(name: string): Promise<void> {
  await redisPubSub().engine.publish(REVOKED_TOPIC, { name });
}

let revocationSubscription: Promise<unknown> | undefined;
/** `listener` runs when any process revokes the keys of `name`. */
export async function onRevocation(listener: (name: string) => void): Promise<() => void> {
  revocationSubscription ??= subscribeChannel(REVOKED_TOPIC, (message: { name: string }) => local.emit('revoked', message.name)).catch((error: unknown) => {
      revocationSubscription = undefined; // try again with the next caller
      throw error;
    });
  await revocationSubscription;
  local.on('revoked', listener);
  return () => local.off('revoked', listener);
}
