// Batching and sharing of reads behind field resolvers. Per request, image metadata and
// audit trails are loaded once per batch. Across subscribers of one process, a task
// change is re-read once per version, however many subscribers watch it.
import DataLoader from 'dataloader';
import { getCallbackAttempts, getImagesMeta, getTaskEvents } from '../tasks/service.ts';

type ImageMeta = Awaited<ReturnType<typeof getImagesMeta>>[number];

// Image metadata never changes (an image is only ever inserted, expired by retention or
// deleted), so a small process-wide cache is safe; deletion and expiry are checked by the task
// row that points at it (sourceImageId/resultImageId, imagesExpiredAt).
const imageCache = new Map<string, ImageMeta>();
const IMAGE_CACHE_SIZE = 5000;

// DataLoader batches the misses of one tick into one read; its own per-key cache is off,
// the bounded map above is the cache.
const imageLoader = new DataLoader<string, ImageMeta | undefined>(
  async (ids) => {
    const rows = await getImagesMeta([...ids]);
    for (const row of rows) {
      if (imageCache.size >= IMAGE_CACHE_SIZE) imageCache.delete(imageCache.keys().next().value!);
      imageCache.set(row.id, row);
    }
    const byId = new Map(rows.map((row) => [row.id, row]));
    return ids.map((id) => byId.get(id));
  },
  { cache: false },
);

export function loadImage(id: string): Promise<ImageMeta | undefined> {
  const hit = imageCache.get(id);
  return hit ? Promise.resolve(hit) : imageLoader.load(id);
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

// Callback attempts change without the task changing (no version to key a cache on):
// batched per tick, never cached.
const callbacksLoader = new DataLoader<string, CallbackAttempt[]>(
  async (taskIds) => {
    const byTask = new Map<string, CallbackAttempt[]>();
    for (const row of await getCallbackAttempts([...taskIds])) {
      const list = byTask.get(row.taskId) ?? [];
      list.push(row);
      byTask.set(row.taskId, list);
    }
    return taskIds.map((id) => byTask.get(id) ?? []);
  },
  { cache: false },
);

export function loadCallbacks(taskId: string): Promise<CallbackAttempt[]> {
  return callbacksLoader.load(taskId);
}

export interface Loaders {
  image: typeof loadImage;
  events: typeof loadEvents;
  callbacks: typeof loadCallbacks;
}

export function createLoaders(): Loaders {
  return { image: loadImage, events: loadEvents, callbacks: loadCallbacks };
}
