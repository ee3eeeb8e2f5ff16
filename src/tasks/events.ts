// Task change notifications over Redis pub/sub, so a worker on one host reaches the
// subscribers of any API process on any host. A message is a hint carrying ids, status
// and version, never the row: receivers re-read PostgreSQL, the truth. Pub/sub may drop
// messages while a connection is down, so after the subscriber connection comes back
// every listener is told to resynchronise (re-read what it watches).
import { EventEmitter } from 'node:events';
import { config } from '../config.ts';
import { log } from '../log.ts';
import { pool } from '../db.ts';
import { channel, redisPubSub, subscribeChannel } from '../redis.ts';
import { withTimeout } from '../timeout.ts';
import { query, sql } from '../sql.ts';
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

/** This process's listeners by owner, for the periodic catch-up below (Redis has its own list). */
const listenersByOwner = new Map<string, Set<(change: TaskChange) => void>>();

/** Calls `listener` for every change of `ownerId`'s tasks; resolves once subscribed. */
export async function subscribeToOwner(ownerId: string, listener: (change: TaskChange) => void): Promise<() => void> {
  const { engine } = redisPubSub();
  watchReconnects();
  const subscriptionId = await subscribeChannel(ownerTopic(ownerId), listener);
  let listeners = listenersByOwner.get(ownerId);
  if (!listeners) listenersByOwner.set(ownerId, (listeners = new Set()));
  listeners.add(listener);
  return () => {
    engine.unsubscribe(subscriptionId);
    listeners.delete(listener);
    if (listeners.size === 0 && listenersByOwner.get(ownerId) === listeners) listenersByOwner.delete(ownerId);
  };
}

/** How far back a catch-up looks before the previous one (a change's `updatedAt` is its statement's start, not its commit). */
const CATCH_UP_MARGIN_MS = 10_000;
let caughtUpTo: Date | null = null;

/**
 * A change message can be lost while our connection stays up: its publisher's connection
 * was cut, or it died between its commit and its publish. So every LIVE_RESYNC_INTERVAL_MS
 * this process asks PostgreSQL, in one query, which tasks of the owners it has listeners
 * for changed since the last time, and hands those to the listeners as if Redis had: each
 * watcher re-reads only what is newer than what it delivered. A lost final state arrives
 * at most one interval late, whatever the number of subscribers.
 */
async function catchUp() {
  if (listenersByOwner.size === 0) return;
  try {
    const [{ at }] = await query<{ at: Date }>(pool, sql`SELECT now() AS "at"`);
    const since = caughtUpTo ? new Date(caughtUpTo.getTime() - CATCH_UP_MARGIN_MS) : new Date(at.getTime() - config.liveResyncIntervalMs - CATCH_UP_MARGIN_MS);
    const changes = await query<TaskChange>(pool, sql`
      SELECT "id", "ownerId", "status", "version", "progress" FROM "Task"
      WHERE "ownerId" = ANY(${[...listenersByOwner.keys()]}::text[]) AND "updatedAt" >= ${since}::timestamptz`);
    caughtUpTo = at;
    for (const change of changes) for (const listener of listenersByOwner.get(change.ownerId) ?? []) listener(change);
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
    // answers, Redis delivers to us again. Then every open subscription re-reads.
    setImmediate(() => {
      subscriber.ping().then(
        () => {
          log.info('pub/sub connection is back: resynchronising open subscriptions');
          local.emit('resync');
        },
        // Lost again before it answered: the next 'ready' resynchronises.
        (error: Error) => log.warn({ err: error.message }, 'pub/sub reconnect check failed'),
      );
    });
  });
}

/** `listener` runs whenever messages may have been missed (the subscriber reconnected). */
export function onResync(listener: () => void): () => void {
  watchReconnects();
  local.on('resync', listener);
  return () => local.off('resync', listener);
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
