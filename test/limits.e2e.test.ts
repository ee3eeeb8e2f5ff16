// Limits that keep one request or one key from holding the workers (issue #11, part 3), end to
// end against real `npm start` processes:
//  - MAX_OUTPUT_PIXELS: a result over the limit is refused at create time (GraphQL and REST,
//    InvalidInput naming the field), and by the worker for a task created before the limit;
//  - MAX_RUNNING_TASKS_PER_KEY: one key with many long tasks cannot take every worker.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { until } from './helpers/client.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { parsePrometheus } from './helpers/prometheus.ts';
import { maxRunningAtOnce } from './helpers/running.ts';
import { startService, type Service } from './helpers/service.ts';

// Slow by design: the running-cap scenario waits for a long real AVIF encode.
vi.setConfig({ testTimeout: 300_000, hookTimeout: 300_000 });

// About four seconds of AVIF encoding on an idle machine (more on a busy one): a job long
// enough that everything the test checks happens while the first one still runs.
const HEAVY = { width: 1024, format: 'AVIF' };
const LIMIT_MESSAGE = (w: number, h: number) =>
  `the result would be ${w}x${h} = ${w * h} pixels, over the limit of 50000000 (MAX_OUTPUT_PIXELS)`;

let infra: TestInfra;
let service: Service;
const keys: Record<'alice' | 'bob' | 'carol', string> = { alice: '', bob: '', carol: '' };
let big: Buffer;
let onePixel: Buffer;
let twoByOne: Buffer;

beforeAll(async () => {
  [infra, big, onePixel, twoByOne] = await Promise.all([
    createInfra('limits'),
    photo(1024, 1024),
    sharp({ create: { width: 1, height: 1, channels: 3, background: '#fff' } }).png().toBuffer(),
    sharp({ create: { width: 2, height: 1, channels: 3, background: '#fff' } }).png().toBuffer(),
  ]);
  service = await startService(infra, { WORKERS: '2', MAX_RUNNING_TASKS_PER_KEY: '1', METRICS_PUSH_INTERVAL_MS: '250' });
  for (const name of Object.keys(keys) as (keyof typeof keys)[]) keys[name] = await infra.createKey(name);
});

afterAll(async () => {
  await service?.stop();
  await infra?.dispose();
});

const sql = (text: string, params?: unknown[]) => infra.sql(text, params);

/** createTask over GraphQL multipart, as any client sends it; the union member it answered. */
async function createTask(key: string, bytes: Uint8Array, resize: Record<string, unknown>, run: boolean) {
  const form = new FormData();
  form.append(
    'operations',
    JSON.stringify({
      query: `mutation($input: CreateTaskInput!) { createTask(input: $input) {
        __typename ... on Task { id status } ... on Error { message } ... on InvalidInput { field } } }`,
      variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: null, resize, run } },
    }),
  );
  form.append('map', JSON.stringify({ 0: ['variables.input.image'] }));
  form.append('0', new Blob([bytes as Uint8Array<ArrayBuffer>]), 'image.png');
  const response = await fetch(`${service.url}/graphql`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
  const body = await response.json();
  return body.data?.createTask as { __typename: string; id?: string; status?: string; message?: string; field?: string | null };
}

async function submit(key: string, bytes: Uint8Array, resize: Record<string, unknown>): Promise<string> {
  const task = await createTask(key, bytes, resize, true);
  if (task?.__typename !== 'Task') throw new Error(`createTask failed: ${JSON.stringify(task)}`);
  return task.id!;
}

async function runTask(key: string, id: string) {
  const response = await fetch(`${service.url}/graphql`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ query: `mutation($id: ID!) { runTask(id: $id) { __typename } }`, variables: { id } }),
  });
  return (await response.json()).data?.runTask.__typename;
}

const counts = async () =>
  (await sql(`SELECT (SELECT count(*)::int FROM "Task") AS tasks, (SELECT count(*)::int FROM "Image") AS images`))[0];

async function tasksOf(ids: string[]) {
  return sql(`SELECT id, status, attempts, error, "startedAt" FROM "Task" WHERE id = ANY($1::uuid[])`, [ids]) as Promise<
    { id: string; status: string; attempts: number; error: string | null; startedAt: Date | null }[]
  >;
}

async function eventsOf(id: string): Promise<string[]> {
  return (await sql(`SELECT status FROM "TaskEvent" WHERE "taskId" = $1 ORDER BY id`, [id])).map((e) => e.status as string);
}

describe('MAX_OUTPUT_PIXELS', () => {
  it('refuses a result over the limit at create time with InvalidInput naming the field, and stores nothing', async () => {
    const before = await counts();
    // The case: a 69-byte PNG to 16384x16384 AVIF (it held a worker until JOB_TIMEOUT_MS).
    expect(await createTask(keys.carol, onePixel, { width: 16384, height: 16384, format: 'AVIF' }, true)).toEqual({
      __typename: 'InvalidInput',
      field: 'resize.width',
      message: LIMIT_MESSAGE(16384, 16384),
    });
    // Only the height given: the width follows from the aspect ratio (2:1), and is counted.
    expect(await createTask(keys.carol, twoByOne, { height: 16384, format: 'TIFF' }, true)).toEqual({
      __typename: 'InvalidInput',
      field: 'resize.height',
      message: LIMIT_MESSAGE(32768, 16384),
    });
    expect(await counts()).toEqual(before);
    // What counts is the result sharp would make: without enlargement a 1x1 COVER stays 1x1.
    expect(await createTask(keys.carol, onePixel, { width: 16384, height: 16384, withoutEnlargement: true }, false)).toMatchObject({
      __typename: 'Task',
      status: 'CREATED',
    });
  });

  it('gives the REST facade the same refusal (it calls the same service)', async () => {
    const before = await counts();
    const form = new FormData();
    form.append('jobDefinition', 'IMAGE_RESIZE');
    form.append('image', new Blob([onePixel as Uint8Array<ArrayBuffer>], { type: 'image/png' }), 'pixel.png');
    form.append('width', '16384');
    form.append('height', '16384');
    form.append('format', 'avif');
    const response = await fetch(`${service.url}/api/tasks`, { method: 'POST', headers: { authorization: `Bearer ${keys.carol}` }, body: form });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'InvalidInput', field: 'width', message: LIMIT_MESSAGE(16384, 16384) });
    expect(await counts()).toEqual(before);
  });

  it('is enforced by the worker too: a task created before the limit fails at once, permanently, before any work', async () => {
    const created = await createTask(keys.carol, onePixel, { width: 16, height: 16, format: 'AVIF' }, false);
    expect(created.__typename).toBe('Task');
    const id = created.id!;
    // As if created before MAX_OUTPUT_PIXELS existed (or was lowered).
    await sql(`UPDATE "Task" SET params = params || '{"width": 16384, "height": 16384}' WHERE id = $1`, [id]);
    expect(await runTask(keys.carol, id)).toBe('Task');
    const [failed] = await until(() => tasksOf([id]), ([t]) => t.status === 'FAILED' || t.status === 'DONE', 240_000);
    expect(failed).toMatchObject({ status: 'FAILED', attempts: 1, error: LIMIT_MESSAGE(16384, 16384) });
    expect(await eventsOf(id)).toEqual(['CREATED', 'QUEUED', 'RUNNING', 'FAILED']);
  });
});

describe('MAX_RUNNING_TASKS_PER_KEY', () => {
  it('keeps one key from taking every worker: another key\'s task starts within one job\'s time, while a key alone uses every worker', async () => {
    // Alice alone: both her long jobs run at once, past her cap of 1 (nobody else waits).
    const heavies = [await submit(keys.alice, big, HEAVY), await submit(keys.alice, big, HEAVY)];
    await until(() => tasksOf(heavies), (tasks) => tasks.every((t) => t.status === 'RUNNING'), 120_000, 50);
    // Five more of hers, then Bob's behind all of them (the queue is first in, first out).
    const shorts: string[] = [];
    for (let i = 0; i < 5; i++) shorts.push(await submit(keys.alice, big, { width: 64 }));
    const bobs = await submit(keys.bob, big, { width: 64 });
    await until(() => tasksOf([bobs]), ([bob]) => bob.status === 'DONE', 240_000, 50);
    // Bob's task ran as soon as one of Alice's jobs ended: none of her later tasks started
    // before it, and they waited without spending an attempt.
    const [order] = await sql(
      `SELECT (SELECT min(id) FROM "TaskEvent" WHERE "taskId" = $1 AND status = 'RUNNING') AS bob_started,
              (SELECT min(id) FROM "TaskEvent" WHERE "taskId" = ANY($2::uuid[]) AND status = 'RUNNING') AS first_short_started,
              (SELECT min(id) FROM "TaskEvent" WHERE "taskId" = ANY($3::uuid[]) AND status IN ('DONE', 'FAILED')) AS first_heavy_ended,
              (SELECT max(id) FROM "TaskEvent" WHERE "taskId" = ANY($3::uuid[]) AND status IN ('DONE', 'FAILED')) AS last_heavy_ended`,
      [bobs, shorts, heavies],
    );
    expect(BigInt(order.bob_started as string)).toBeGreaterThan(BigInt(order.first_heavy_ended as string));
    // While one of her heavy jobs still ran, none of Alice's later tasks started before Bob's.
    // Once both had ended she had nothing running, and her cap let one run at once: the two
    // heavy jobs are alike, so they may end close together, before Bob's claim.
    if (order.first_short_started !== null && BigInt(order.first_short_started as string) < BigInt(order.bob_started as string)) {
      expect(BigInt(order.first_short_started as string)).toBeGreaterThan(BigInt(order.last_heavy_ended as string));
    }
    // The waiting shows in /metrics: deliveries that had to wait for a slot.
    const metrics = await until(
      () => fetch(`${service.url}/metrics`).then(async (r) => parsePrometheus(await r.text())),
      (m) => m.sum('tasklane_claims_waiting_total') >= 1,
      30_000,
    );
    expect(metrics.types.get('tasklane_claims_waiting_total')).toBe('counter');
    expect(metrics.types.get('tasklane_tasks_waiting_for_slot')).toBe('gauge');

    // Every one of Alice's tasks completes (none stranded waiting), one delivery each.
    const alices = [...heavies, ...shorts];
    const done = await until(() => tasksOf(alices), (tasks) => tasks.every((t) => t.status === 'DONE' || t.status === 'FAILED'), 280_000, 100);
    expect(done.map((t) => [t.status, t.attempts])).toEqual(alices.map(() => ['DONE', 1]));
    for (const id of alices) expect(await eventsOf(id)).toEqual(['CREATED', 'QUEUED', 'RUNNING', 'DONE']);
    expect(await maxRunningAtOnce(sql, 'alice')).toBe(2); // alone, she had both workers
    expect(await sql(`SELECT id FROM "Task" WHERE "waitingForSlot" AND status = 'QUEUED'`)).toEqual([]);
  });
});
