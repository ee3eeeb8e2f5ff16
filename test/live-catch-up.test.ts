// The catch-up that repairs lost change messages (src/tasks/events.ts), in-process against
// the real PostgreSQL and Redis, with a short LIVE_RESYNC_INTERVAL_MS. Tasks are changed
// straight in PostgreSQL without publishing, as if every change message were lost: only the
// catch-up can deliver them. What is checked: it does; and a tasksUpdated subscriber that
// starts after some tasks finished never gets those (the catch-up re-reads a window that
// reaches back before the subscription), only what changed after it started.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inProcess } from './helpers/in-process.ts';

let dispose: () => Promise<void>;
let watch: typeof import('../src/tasks/watch.ts');
let prisma: typeof import('../src/db.ts').prisma;

beforeAll(async () => {
  ({ dispose } = await inProcess('catchup', { LIVE_RESYNC_INTERVAL_MS: '50' }));
  watch = await import('../src/tasks/watch.ts');
  ({ prisma } = await import('../src/db.ts'));
});

afterAll(async () => {
  await dispose?.();
});

const caller = { keyId: 'test', owner: 'olga' };

/** A task DONE in PostgreSQL, with no change message published. */
async function silentlyDone(): Promise<string> {
  const task = await prisma.task.create({
    data: { ownerId: caller.owner, jobDefinition: 'IMAGE_RESIZE', params: { width: 8 }, status: 'DONE', version: 4, finishedAt: new Date() },
  });
  return task.id;
}

/** Collects a stream's task ids; `waitFor(id)` resolves once that id arrived. */
function collect(stream: AsyncIterable<{ id: string }>) {
  const ids: string[] = [];
  const waiting: { id: string; resolve: () => void }[] = [];
  const iterator = stream[Symbol.asyncIterator]();
  void (async () => {
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      ids.push(next.value.id);
      for (const w of waiting.filter((w) => w.id === next.value.id)) w.resolve();
    }
  })();
  return {
    ids,
    waitFor: (id: string) => (ids.includes(id) ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ id, resolve }))),
    close: () => iterator.return?.(),
  };
}

it('a lost change arrives by catch-up, and a new tasksUpdated subscriber gets nothing from before it started', async () => {
  const early = collect(await watch.watchTasks(caller, ['DONE']));
  try {
    const old = [await silentlyDone(), await silentlyDone(), await silentlyDone()];
    // Lost messages are repaired: the early subscriber gets them from a catch-up.
    await Promise.all(old.map((id) => early.waitFor(id)));

    const late = collect(await watch.watchTasks(caller, ['DONE']));
    try {
      // Each new task can only arrive with a catch-up that ran after the late subscriber
      // started, and whose window reaches back over the old tasks (its margin).
      const fresh = [];
      for (let i = 0; i < 2; i++) {
        const id = await silentlyDone();
        fresh.push(id);
        await late.waitFor(id);
      }
      expect(late.ids).toEqual(fresh);
      expect(early.ids.slice(0, old.length).sort()).toEqual([...old].sort()); // one catch-up: same-millisecond changes in id order
      expect(early.ids.slice(old.length)).toEqual(fresh);
    } finally {
      await late.close();
    }
  } finally {
    await early.close();
  }
});
