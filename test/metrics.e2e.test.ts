// /metrics against real processes: one API and, started later, one worker, so queued work
// shows as queue depth first and the worker's own counts (RUNNING, DONE, FAILED, job
// durations, queue waits) can only reach the API's /metrics through Redis.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from './helpers/client.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { parsePrometheus, type Exposition } from './helpers/prometheus.ts';
import { SCRIPTS, startProcess, startService, testEnv, type RunningProcess, type Service } from './helpers/service.ts';

const EXTRA = { METRICS_PUSH_INTERVAL_MS: '300', WORKERS: '1' };
let infra: TestInfra;
let api: Service;
let worker: RunningProcess | undefined;
let key: string;
let jpeg: Buffer;

beforeAll(async () => {
  infra = await createInfra('metrics');
  [api, jpeg] = await Promise.all([startService(infra, EXTRA, SCRIPTS.api), photo(1200, 900)]);
  key = await infra.createKey('metrics');
});

afterAll(async () => {
  await worker?.stop();
  await api?.stop();
  await infra?.dispose();
});

async function scrape(): Promise<Exposition> {
  const response = await fetch(`${api.url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await response.text());
}

const auth = () => ({ authorization: `Bearer ${key}` });

async function createAndRun(bytes: Uint8Array): Promise<string> {
  const form = new FormData();
  form.append('jobDefinition', 'IMAGE_RESIZE');
  form.append('width', '200');
  form.append('image', new Blob([bytes as Uint8Array<ArrayBuffer>]), 'photo.jpg');
  const created = await fetch(`${api.url}/api/tasks`, { method: 'POST', headers: auth(), body: form });
  expect(created.status).toBe(201);
  const { id } = await created.json();
  expect((await fetch(`${api.url}/api/tasks/${id}/run`, { method: 'POST', headers: auth() })).status).toBe(202);
  return id;
}

/** Opens an SSE subscription; resolves once the stream is established. */
async function subscribe(query: string): Promise<AbortController> {
  const abort = new AbortController();
  const response = await fetch(`${api.url}/graphql`, {
    method: 'POST',
    headers: { ...auth(), 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query }),
    signal: abort.signal,
  });
  expect(response.status).toBe(200);
  // Drain in the background until aborted.
  void (async () => {
    try {
      for await (const _ of response.body!) void _;
    } catch {
      // aborted
    }
  })();
  return abort;
}

describe('/metrics', () => {
  it('exposes every metric family, parseable, before any task ran', async () => {
    const metrics = await scrape();
    const expected: Record<string, string> = {
      tasklane_task_transitions_total: 'counter',
      tasklane_job_duration_seconds: 'histogram',
      tasklane_queue_wait_seconds: 'histogram',
      tasklane_queue_jobs: 'gauge',
      tasklane_tasks: 'gauge',
      tasklane_tasks_waiting_for_slot: 'gauge',
      tasklane_claims_waiting_total: 'counter',
      tasklane_active_subscriptions: 'gauge',
      tasklane_http_request_duration_seconds: 'histogram',
      tasklane_graphql_operation_duration_seconds: 'histogram',
      tasklane_blob_store_objects: 'gauge',
      tasklane_blob_store_bytes: 'gauge',
      tasklane_retention_images_removed_total: 'counter',
      tasklane_retention_tasks_removed_total: 'counter',
      tasklane_orphan_blobs_removed_total: 'counter',
      process_cpu_user_seconds_total: 'counter',
      nodejs_eventloop_lag_seconds: 'gauge',
    };
    for (const [name, type] of Object.entries(expected)) expect(metrics.types.get(name), name).toBe(type);
    for (const state of ['waiting', 'active', 'delayed']) expect(metrics.sum('tasklane_queue_jobs', { state })).toBe(0);
    expect(metrics.sum('tasklane_task_transitions_total')).toBe(0);
    expect(metrics.has('tasklane_tasks_waiting_for_slot')).toBe(true);
    expect(metrics.sum('tasklane_tasks_waiting_for_slot')).toBe(0);
    expect(metrics.sum('tasklane_blob_store_objects')).toBe(0);
    expect(metrics.sum('tasklane_blob_store_bytes')).toBe(0);
  });

  it('moves as tasks run: queue depth, transitions (API and worker), durations, waits, subscriptions, requests', async () => {
    const subscription = await subscribe('subscription { tasksUpdated { id status } }');
    await until(scrape, (m) => m.sum('tasklane_active_subscriptions', { field: 'tasksUpdated' }) === 1);

    // No worker yet: the tasks wait on the queue.
    const good = await createAndRun(jpeg);
    const bad = await createAndRun(jpeg.subarray(0, Math.floor(jpeg.byteLength / 2)));
    let metrics = await until(scrape, (m) => m.sum('tasklane_queue_jobs', { state: 'waiting' }) === 2);
    expect(metrics.sum('tasklane_task_transitions_total', { status: 'CREATED', job_definition: 'IMAGE_RESIZE' })).toBe(2);
    expect(metrics.sum('tasklane_task_transitions_total', { status: 'QUEUED' })).toBe(2);
    expect(metrics.sum('tasklane_tasks', { status: 'QUEUED', job_definition: 'IMAGE_RESIZE' })).toBe(2);
    expect(metrics.sum('tasklane_http_request_duration_seconds_count', { method: 'POST', route: '/api/tasks', status: '201' })).toBe(2);
    expect(metrics.sum('tasklane_http_request_duration_seconds_count', { method: 'POST', route: '/api/tasks/:id/run', status: '202' })).toBe(2);

    worker = startProcess(SCRIPTS.worker, testEnv(infra, EXTRA));
    metrics = await until(
      scrape,
      (m) =>
        m.sum('tasklane_task_transitions_total', { status: 'DONE' }) === 1 &&
        m.sum('tasklane_task_transitions_total', { status: 'FAILED' }) === 1 &&
        m.sum('tasklane_queue_wait_seconds_count') === 2 &&
        // A job's duration is observed after its final transition is counted: a push can fall between.
        m.sum('tasklane_job_duration_seconds_count') === 2,
      60_000,
      250,
    );
    expect(metrics.sum('tasklane_task_transitions_total', { status: 'RUNNING', job_definition: 'IMAGE_RESIZE' })).toBe(2);
    expect(metrics.sum('tasklane_job_duration_seconds_count', { outcome: 'done', job_definition: 'IMAGE_RESIZE' })).toBe(1);
    expect(metrics.sum('tasklane_job_duration_seconds_count', { outcome: 'failed' })).toBe(1);
    expect(metrics.sum('tasklane_job_duration_seconds_sum')).toBeGreaterThan(0);
    // They waited at least until the worker started.
    expect(metrics.sum('tasklane_queue_wait_seconds_sum')).toBeGreaterThan(0);
    expect(metrics.sum('tasklane_queue_wait_seconds_bucket', { le: '+Inf' })).toBe(2);
    expect(metrics.sum('tasklane_queue_jobs', { state: 'waiting' })).toBe(0);
    expect(metrics.sum('tasklane_tasks', { status: 'DONE' })).toBe(1);
    expect(metrics.sum('tasklane_tasks', { status: 'FAILED' })).toBe(1);
    // Both sources and the one result, as their rows count them.
    const [stored] = await infra.sql<{ objects: number; bytes: number }>(
      `SELECT count(*)::int AS objects, sum("byteSize")::int AS bytes FROM "Image"`,
    );
    expect(stored.objects).toBe(3);
    expect(metrics.sum('tasklane_blob_store_objects')).toBe(3);
    expect(metrics.sum('tasklane_blob_store_bytes')).toBe(stored.bytes);

    // GraphQL operations are timed by root field.
    const query = await fetch(`${api.url}/graphql`, {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ query: `{ task(id: "${good}") { ... on Task { status } } }` }),
    });
    expect((await query.json()).data.task.status).toBe('DONE');
    metrics = await scrape();
    expect(metrics.sum('tasklane_graphql_operation_duration_seconds_count', { operation_type: 'query', field: 'task' })).toBe(1);

    subscription.abort();
    await until(scrape, (m) => m.sum('tasklane_active_subscriptions', { field: 'tasksUpdated' }) === 0);
    expect(bad).not.toBe(good);
  });

  it('logs JSON lines that carry the task id', async () => {
    const lines = (api.output() + worker!.output())
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg: string; taskId?: string; level: number });
    const aboutTasks = lines.filter((line) => /^(task |job )/.test(line.msg));
    expect(aboutTasks.map((line) => line.msg)).toEqual(expect.arrayContaining(['task created', 'task queued', 'job started', 'job done', 'job failed']));
    for (const line of aboutTasks) expect(line.taskId, line.msg).toMatch(/^[0-9a-f-]{36}$/);
  });
});
