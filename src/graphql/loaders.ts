// Batching and sharing of reads behind field resolvers. Per request, image metadata and
// audit trails are loaded once per batch. Across subscribers of one process, a task
// change is re-read once per version, however many subscribers watch it.
import { getCallbackAttempts, getImagesMeta, getTaskEvents } from '../tasks/service.ts';

type ImageMeta = Awaited<ReturnType<typeof getImagesMeta>>[number];

/** Collects the keys asked for in one tick and loads them with one call. */
function batchLoader<K, V>(load: (keys: K[]) => Promise<Map<K, V>>) {
  let pending: Map<K, { resolve: (value: V | undefined) => void; reject: (error: unknown) => void }[]> | null = null;
  return (key: K): Promise<V | undefined> =>
    new Promise((resolve, reject) => {
      if (!pending) {
        const batch = new Map<K, { resolve: (value: V | undefined) => void; reject: (error: unknown) => void }[]>();
        pending = batch;
        queueMicrotask(() => {
          pending = null;
          load([...batch.keys()]).then(
            (values) => batch.forEach((waiters, k) => waiters.forEach((w) => w.resolve(values.get(k)))),
            (error) => batch.forEach((waiters) => waiters.forEach((w) => w.reject(error))),
          );
        });
      }
      const waiters = pending.get(key) ?? [];
      waiters.push({ resolve, reject });
      pending.set(key, waiters);
    });
}

// Image metadata never changes (an image is only ever inserted or deleted), so a small
// process-wide cache is safe; deletion is checked by the task row that points at it.
const imageCache = new Map<string, ImageMeta>();
const IMAGE_CACHE_SIZE = 5000;

const loadImagesShared = batchLoader<string, ImageMeta>(async (ids) => {
  const rows = await getImagesMeta(ids);
  for (const row of rows) {
    if (imageCache.size >= IMAGE_CACHE_SIZE) imageCache.delete(imageCache.keys().next().value!);
    imageCache.set(row.id, row);
  }
  return new Map(rows.map((row) => [row.id, row]));
});

export function loadImage(id: string): Promise<ImageMeta | undefined> {
  const hit = imageCache.get(id);
  return hit ? Promise.resolve(hit) : loadImagesShared(id);
}

// Audit trails by (task, version): one read per version for all subscribers.
const eventsCache = new Map<string, Promise<Awaited<ReturnType<typeof getTaskEvents>>>>();
export function loadEvents(taskId: string, version: number) {
  const key = `${taskId}:${version}`;
  let hit = eventsCache.get(key);
  if (!hit) {
    hit = getTaskEvents(taskId);
    eventsCache.set(key, hit);
    hit.catch(() => {}).finally(() => setTimeout(() => eventsCache.delete(key), 2000).unref());
  }
  return hit;
}

export type CallbackAttempt = Awaited<ReturnType<typeof getCallbackAttempts>>[number];

// Callback attempts change without the task changing (no version to key a cache on): batched, never cached.
const loadCallbacksBatched = batchLoader<string, CallbackAttempt[]>(async (taskIds) => {
  const byTask = new Map<string, CallbackAttempt[]>();
  for (const row of await getCallbackAttempts(taskIds)) {
    const list = byTask.get(row.taskId) ?? [];
    list.push(row);
    byTask.set(row.taskId, list);
  }
  return byTask;
});

export async function loadCallbacks(taskId: string): Promise<CallbackAttempt[]> {
  return (await loadCallbacksBatched(taskId)) ?? [];
}

export interface Loaders {
  image: typeof loadImage;
  events: typeof loadEvents;
  callbacks: typeof loadCallbacks;
}

export function createLoaders(): Loaders {
  return { image: loadImage, events: loadEvents, callbacks: loadCallbacks };
}
