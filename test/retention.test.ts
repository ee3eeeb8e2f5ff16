// Retention against the real PostgreSQL and blob store (disk, or s3 with TEST_STORAGE=s3),
// in-process: the sweeps take the time as a parameter (`now`), so nothing waits out a TTL.
// What is checked: after RESULT_TTL_MS an ended task's images leave the store, source/result
// are null, /images/<id> answers 410; after TASK_TTL_MS the task and its events go
// (TaskDoesNotExist); active tasks are never touched; orphan blobs go after the grace period
// and fresh ones stay; concurrent sweeps split the work without errors; the reconciler runs it.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { photo } from './helpers/images.ts';
import type { TestInfra } from './helpers/infra.ts';
import { inProcess } from './helpers/in-process.ts';

const HOUR = 3_600_000;
const RESULT_TTL_MS = 2 * HOUR;
const TASK_TTL_MS = 5 * HOUR;

let infra: TestInfra;
let key: string;
let otherKey: string;
let yoga: typeof import('../src/http/yoga.ts').yoga;
let retention: typeof import('../src/tasks/retention.ts');
let store: typeof import('../src/tasks/store.ts');
let service: typeof import('../src/tasks/service.ts');
let blobs: typeof import('../src/blobs.ts');
let reconciler: typeof import('../src/tasks/reconciler.ts');
let dispose: () => Promise<void>;
let image: Buffer;

beforeAll(async () => {
  ({ infra, dispose } = await inProcess('retention', {
    RESULT_TTL_MS: String(RESULT_TTL_MS),
    TASK_TTL_MS: String(TASK_TTL_MS),
  }));
  ({ yoga } = await import('../src/http/yoga.ts'));
  retention = await import('../src/tasks/retention.ts');
  store = await import('../src/tasks/store.ts');
  service = await import('../src/tasks/service.ts');
  blobs = await import('../src/blobs.ts');
  reconciler = await import('../src/tasks/reconciler.ts');
  key = await infra.createKey('keeper');
  otherKey = await infra.createKey('stranger');
  image = await photo(64, 48, 'png');
});

afterAll(async () => {
  await dispose?.();
});

const caller = { keyId: 'test', owner: 'keeper' };
const later = (ms: number) => new Date(Date.now() + ms);

async function gql(query: string, variables: Record<string, unknown> = {}, apiKey = key) {
  const response = await yoga.fetch('http://retention/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as { data?: Record<string, any>; errors?: unknown[] };
}

function get(path: string, headers: Record<string, string> = {}, method = 'GET') {
  return yoga.fetch(`http://retention${path}`, { method, headers });
}

/** A task of `caller` in `status`, through the real lifecycle functions; its image keys. */
async function taskIn(status: 'CREATED' | 'QUEUED' | 'RUNNING' | 'DONE' | 'FAILED' | 'DELETED') {
  const file = new File([image as Uint8Array<ArrayBuffer>], 'in.png', { type: 'image/png' });
  const created = await service.createTask(caller, {
    jobDefinition: 'IMAGE_RESIZE',
    image: file,
    resize: { width: 16 },
    run: status !== 'CREATED',
  });
  const id = created.id;
  let resultId: string | null = null;
  if (status === 'RUNNING' || status === 'DONE' || status === 'FAILED') {
    const claim = await store.claim(id, 600_000, 1000);
    if (!claim || claim === 'waiting') throw new Error(`could not claim ${id}`);
    if (status === 'DONE') {
      resultId = randomUUID();
      const storageKey = blobs.imageKey(resultId);
      const put = await blobs.blobStore().put(storageKey, image, { contentType: 'image/png' });
      const done = await store.complete(id, claim.task.attempts, {
        id: resultId, format: 'PNG', width: 64, height: 48, byteSize: put.byteSize, storageKey, sha256: put.sha256,
      });
      if (!done) throw new Error(`could not complete ${id}`);
    }
    // A task fails in the delivery that holds it.
    if (status === 'FAILED' && !(await store.fail(id, 'broken on purpose', claim.task.attempts))) throw new Error(`could not fail ${id}`);
  }
  const [row] = await infra.sql<{ source: string | null }>(
    `SELECT i."storageKey" AS source FROM "Task" t JOIN "Image" i ON i.id = t."sourceImageId" WHERE t.id = $1`,
    [id],
  );
  if (status === 'DELETED') await service.deleteTask(caller, id);
  return { id, sourceImageId: created.sourceImageId!, resultId, keys: [row.source!, ...(resultId ? [blobs.imageKey(resultId)] : [])] };
}

const TASK = `query ($id: ID!) { task(id: $id) { __typename ... on Task { status resultOfJob source { id url } result { id url } events { status } } } }`;

async function present(keys: string[]): Promise<boolean[]> {
  return Promise.all(keys.map(async (k) => (await infra.blobStore.stat(k)) !== null));
}

describe('RESULT_TTL_MS and TASK_TTL_MS', () => {
  it('removes the images of ended tasks (410 after), then the tasks; never an active task\'s', async () => {
    const ended = { done: await taskIn('DONE'), failed: await taskIn('FAILED'), deleted: await taskIn('DELETED') };
    const active = { created: await taskIn('CREATED'), queued: await taskIn('QUEUED'), running: await taskIn('RUNNING') };
    const before = (await gql(TASK, { id: ended.done.id })).data!.task;
    expect(before.result.id).toBe(ended.done.resultId);
    const resultUrl: string = before.result.url;
    const sourceUrl: string = before.source.url;
    expect((await get(resultUrl)).status).toBe(200);

    // Nothing is due yet.
    await retention.sweepExpired({ now: new Date() });
    expect(await present([...ended.done.keys, ...ended.failed.keys])).toEqual([true, true, true]);

    const afterResultTtl = later(RESULT_TTL_MS + 60_000);
    await retention.sweepExpired({ now: afterResultTtl });

    // The ended tasks' blobs are gone, the active tasks' are all there.
    expect(await present([...ended.done.keys, ...ended.failed.keys])).toEqual([false, false, false]);
    expect(await present(Object.values(active).flatMap((t) => t.keys))).toEqual([true, true, true]);
    expect(await infra.orphanBlobs()).toEqual([]);

    expect((await gql(TASK, { id: ended.done.id })).data!.task).toEqual({
      __typename: 'Task',
      status: 'DONE',
      resultOfJob: ended.done.resultId,
      source: null,
      result: null,
      events: [{ status: 'CREATED' }, { status: 'QUEUED' }, { status: 'RUNNING' }, { status: 'DONE' }],
    });
    expect((await gql(TASK, { id: ended.failed.id })).data!.task).toMatchObject({ status: 'FAILED', source: null, result: null });
    for (const t of Object.values(active)) expect((await gql(TASK, { id: t.id })).data!.task.source).not.toBeNull();

    // /images/<id>: 410 for an image that existed and expired (signed URL, the owner's key,
    // HEAD); 404 for another key and for an image that never existed.
    expect((await get(resultUrl)).status).toBe(410);
    expect((await get(sourceUrl)).status).toBe(410);
    expect((await get(resultUrl, {}, 'HEAD')).status).toBe(410);
    expect((await get(`/images/${ended.done.resultId}`, { authorization: `Bearer ${key}` })).status).toBe(410);
    expect((await get(`/images/${ended.done.resultId}`, { authorization: `Bearer ${otherKey}` })).status).toBe(404);
    expect((await get(`/images/${randomUUID()}`, { authorization: `Bearer ${key}` })).status).toBe(404);
    // REST: no URL to a removed result, the id stays.
    const rest = await (await get(`/api/tasks/${ended.done.id}`, { authorization: `Bearer ${key}` })).json();
    expect(rest).toMatchObject({ status: 'DONE', resultOfJob: ended.done.resultId, resultUrl: null });

    // A second sweep at the same time finds nothing more to do.
    expect(await retention.sweepExpired({ now: afterResultTtl })).toMatchObject({ imagesRemoved: 0, tasksRemoved: 0 });

    const afterTaskTtl = later(TASK_TTL_MS + 60_000);
    const run = await retention.sweepExpired({ now: afterTaskTtl });
    expect(run.tasksRemoved).toBeGreaterThanOrEqual(3);
    for (const t of Object.values(ended)) {
      expect((await gql(TASK, { id: t.id })).data!.task).toEqual({ __typename: 'TaskDoesNotExist' });
    }
    const ids = Object.values(ended).map((t) => t.id);
    expect(await infra.sql(`SELECT count(*)::int AS n FROM "TaskEvent" WHERE "taskId" = ANY($1::uuid[])`, [ids])).toEqual([{ n: 0 }]);
    expect(await infra.sql(`SELECT count(*)::int AS n FROM "Image" WHERE id = $1`, [ended.done.resultId])).toEqual([{ n: 0 }]);
    expect((await get(resultUrl)).status).toBe(404); // the tombstone went with its task
    // Active tasks stay, whatever their age.
    for (const t of Object.values(active)) {
      expect((await gql(TASK, { id: t.id })).data!.task.__typename).toBe('Task');
      expect(await present(t.keys)).toEqual(t.keys.map(() => true));
    }
    expect(await infra.orphanBlobs()).toEqual([]);
  });

  it('removes the blobs of a task that goes before its images were swept', async () => {
    const done = await taskIn('DONE');
    // Straight to TASK_TTL_MS: one run marks the images first, the same run removes the task.
    const run = await retention.sweepExpired({ now: later(TASK_TTL_MS + 60_000) });
    expect(run.imagesRemoved).toBeGreaterThanOrEqual(2);
    expect(await present(done.keys)).toEqual([false, false]);
    expect((await gql(TASK, { id: done.id })).data!.task).toEqual({ __typename: 'TaskDoesNotExist' });
    // And a task removed with images not yet expired (removeEndedTasks alone) takes its blobs along.
    const failed = await taskIn('FAILED');
    expect(await retention.removeEndedTasks({ now: later(TASK_TTL_MS + 60_000) })).toBeGreaterThanOrEqual(1);
    expect(await present(failed.keys)).toEqual([false]);
    expect(await infra.orphanBlobs()).toEqual([]);
  });

  it('two sweeps at once split the work: no error, nothing done twice', async () => {
    const tasks = await Promise.all(Array.from({ length: 40 }, () => taskIn('FAILED')));
    const now = later(RESULT_TTL_MS + 60_000);
    let marked = 0;
    let images = 0;
    for (;;) {
      const runs = await Promise.all([0, 1, 2].map(() => retention.sweepExpired({ now, batch: 4 })));
      const round = runs.reduce((sum, r) => sum + r.tasksMarked, 0);
      marked += round;
      images += runs.reduce((sum, r) => sum + r.imagesRemoved, 0);
      if (round === 0) break;
    }
    expect(marked).toBe(40);
    expect(images).toBe(40);
    expect(await present(tasks.flatMap((t) => t.keys))).toEqual(tasks.map(() => false));

    let removed = 0;
    const end = later(TASK_TTL_MS + 60_000);
    for (;;) {
      const counts = await Promise.all([0, 1, 2].map(() => retention.removeEndedTasks({ now: end, batch: 4 })));
      const round = counts.reduce((a, b) => a + b, 0);
      removed += round;
      if (round === 0) break;
    }
    expect(removed).toBe(40);
    const ids = tasks.map((t) => t.id);
    expect(await infra.sql(`SELECT count(*)::int AS n FROM "Task" WHERE id = ANY($1::uuid[])`, [ids])).toEqual([{ n: 0 }]);
  });
});

describe('orphan blobs', () => {
  it('are removed after the grace period; a fresh one and every referenced one stay', async () => {
    const active = await taskIn('QUEUED');
    const expired = await taskIn('FAILED');
    await retention.sweepExpired({ now: later(RESULT_TTL_MS + 60_000) });
    expect(await present(expired.keys)).toEqual([false]);
    // A blob written with no row (a crash before the commit), and an expired image's blob
    // back in the store (its delete had failed): both orphans.
    const orphan = blobs.imageKey(randomUUID());
    await infra.blobStore.put(orphan, image, { contentType: 'image/png' });
    await infra.blobStore.put(expired.keys[0], image, { contentType: 'image/png' });

    const sweep = (now: Date, budget?: number) =>
      retention.sweepOrphanBlobs(infra.blobStore.list()[Symbol.asyncIterator](), { now, ...(budget ? { budget } : {}) });
    // Within the grace period: kept.
    expect(await sweep(new Date())).toMatchObject({ removed: 0, done: true });
    expect(await present([orphan, expired.keys[0]])).toEqual([true, true]);

    // After it: removed, and only those. Several sweeps at once do not trip over each other.
    const afterGrace = later(retention.ORPHAN_GRACE_MS + 60_000);
    const runs = await Promise.all([sweep(afterGrace), sweep(afterGrace), sweep(afterGrace, 1)]);
    expect(runs.reduce((sum, r) => sum + r.removed, 0)).toBeGreaterThanOrEqual(2);
    expect(runs[2]).toMatchObject({ listed: 1, done: false }); // bounded: a budget of one blob
    expect(await present([orphan, expired.keys[0]])).toEqual([false, false]);
    expect(await present(active.keys)).toEqual([true]);
    expect(await infra.orphanBlobs()).toEqual([]);
    const live = await infra.sql<{ n: number }>(`SELECT count(*)::int AS n FROM "Image" WHERE "expiredAt" IS NULL`);
    expect((await infra.blobKeys()).length).toBe(live[0].n);
  });
});

describe('the reconciler', () => {
  it('runs retention', async () => {
    const done = await taskIn('DONE');
    // Ended longer ago than RESULT_TTL_MS (the reconciler's clock is the real one).
    await infra.sql(`UPDATE "Task" SET "finishedAt" = now() - make_interval(secs => $2::float8) WHERE id = $1`, [
      done.id,
      (RESULT_TTL_MS + 60_000) / 1000,
    ]);
    const stop = reconciler.startReconciler(100);
    try {
      await expect
        .poll(async () => (await infra.sql(`SELECT "imagesExpiredAt" IS NOT NULL AS gone FROM "Task" WHERE id = $1`, [done.id]))[0].gone, {
          timeout: 30_000,
          interval: 100,
        })
        .toBe(true);
    } finally {
      await stop();
    }
    expect(await present(done.keys)).toEqual([false, false]);
    expect((await gql(TASK, { id: done.id })).data!.task).toMatchObject({ status: 'DONE', source: null, result: null });
  });
});
