// Callbacks end to end: real `npm start` processes deliver to a receiver this test owns on
// 127.0.0.1 (hence WEBHOOK_ALLOW_PRIVATE_NETWORKS=true; the address policy itself is tested
// in test/callbacks.test.ts). Receivers that fail, hang, or are down while every worker is
// killed and Redis flushed: each message ends with exactly one accepted (2xx) delivery,
// every attempt signed and verified with the standardwebhooks package, nothing lost.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { client, until, type Client } from './helpers/client.ts';
import { childPids, flushPrefix } from './helpers/faults.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { parsePrometheus } from './helpers/prometheus.ts';
import { SCRIPTS, startProcess, startService, testEnv, type Service } from './helpers/service.ts';
import { startReceiver, verified, type Receiver } from './helpers/webhook-receiver.ts';
import { graphql } from './gql/index.ts';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 300_000 });

const TIMEOUT_MS = 3000;
const ENV = {
  WORKERS: '2',
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
  CALLBACK_RETRY_BASE_MS: '20',
  CALLBACK_TIMEOUT_MS: String(TIMEOUT_MS),
  CALLBACK_POLL_INTERVAL_MS: '100',
  LEASE_MS: '2000',
  RECONCILE_INTERVAL_MS: '250',
  METRICS_PUSH_INTERVAL_MS: '500',
};

const CreateWithCallback = graphql(`
  mutation CreateWithCallback($input: CreateTaskInput!) {
    createTask(input: $input) {
      __typename
      ... on Task { id status callbackUrl }
      ... on InvalidInput { message field }
    }
  }
`);

const TaskCallbacks = graphql(`
  query TaskCallbacks($id: ID!) {
    task(id: $id) {
      __typename
      ... on Task {
        id status error progress attempts version resultOfJob finishedAt callbackUrl
        result { id format width height byteSize url }
        callbacks { event attempt at statusCode error }
      }
    }
  }
`);

const DeleteTask = graphql(`
  mutation DeleteWithCallback($id: ID!) {
    deleteTask(id: $id) { __typename ... on Task { id status } }
  }
`);

let infra: TestInfra;
let service: Service;
let receiver: Receiver;
let alice: Client;
let secret: string;
let image: Buffer;

beforeAll(async () => {
  infra = await createInfra('callbacks');
  [service, receiver, image] = await Promise.all([startService(infra, ENV), startReceiver(), photo(64, 48)]);
  alice = client(service.url, await infra.createKey('alice'));
  secret = await cliSecret('alice');
  receiver.verifyWith(secret);
});

afterAll(async () => {
  await service?.stop();
  await receiver?.close();
  await infra?.dispose();
});

/** `npm run key -- secret <name>`: the last line of stdout. */
async function cliSecret(name: string): Promise<string> {
  const cli = startProcess(SCRIPTS.key, testEnv(infra), ['secret', name]);
  expect(await cli.exited).toBe(0);
  return cli.output().trim().split('\n').at(-1)!;
}

async function create(callbackUrl: string, run = true, bytes: Uint8Array = image): Promise<string> {
  const response = await alice.upload(
    CreateWithCallback,
    { input: { jobDefinition: 'IMAGE_RESIZE', image: null as unknown as File, resize: { width: 32, format: 'PNG' }, run, callbackUrl } },
    { path: 'variables.input.image', bytes, name: 'photo.jpg', type: 'image/jpeg' },
  );
  const task = response.data?.createTask;
  if (task?.__typename !== 'Task') throw new Error(`createTask failed: ${JSON.stringify(response)}`);
  expect(task.callbackUrl).toBe(callbackUrl);
  return task.id;
}

async function taskOf(id: string) {
  const task = (await alice.request(TaskCallbacks, { id })).data?.task;
  if (task?.__typename !== 'Task') throw new Error(`no task ${id}`);
  return task;
}

/** Waits until `id` has `n` recorded callback attempts (recorded after the receiver answered). */
function attemptsRecorded(id: string, done: (callbacks: Awaited<ReturnType<typeof taskOf>>['callbacks']) => boolean) {
  return until(() => taskOf(id), (task) => done(task.callbacks), 120_000, 100);
}

const requestsOf = (path: string) => receiver.requests.filter((r) => r.path === path);
const accepted = (path: string) => requestsOf(path).filter((r) => r.status !== null && r.status >= 200 && r.status < 300);

/** Every request to `path` is one message: same webhook-id, each verified with the name's secret. */
function oneMessage(path: string) {
  const requests = requestsOf(path);
  expect(new Set(requests.map((r) => r.headers['webhook-id'])).size).toBe(1);
  const messages = requests.map((r) => verified(secret, r));
  for (const message of messages.slice(1)) expect(message).toMatchObject({ type: messages[0].type, timestamp: messages[0].timestamp });
  return messages[0];
}

describe('the signing secret', () => {
  it('is the key name\'s, printed alone on the last line by npm run key -- secret, and kept when the name gets another key', async () => {
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const [{ callbackSecret }] = await infra.sql<{ callbackSecret: string }>(`SELECT "callbackSecret" FROM "ApiKey" WHERE name = 'alice'`);
    expect(callbackSecret).toBe(secret);
    const create = startProcess(SCRIPTS.key, testEnv(infra), ['create', 'alice']);
    expect(await create.exited).toBe(0);
    expect(await cliSecret('alice')).toBe(secret);
    const missing = startProcess(SCRIPTS.key, testEnv(infra), ['secret', 'nobody']);
    expect(await missing.exited).toBe(1);
    expect(missing.output()).toMatch(/no API key named "nobody"/);
  });
});

describe('a receiver that fails the first attempts', () => {
  it('gets the same message (same webhook-id, each signed) until it accepts one, then no more', async () => {
    receiver.on('/flaky', (n) => (n < 2 ? 500 : 204));
    const id = await create(receiver.url('/flaky'));
    const task = await attemptsRecorded(id, (callbacks) => callbacks.length === 3);
    expect(task.status).toBe('DONE');
    expect(task.callbacks.map(({ at: _, ...rest }) => rest)).toEqual([
      { event: 'task.done', attempt: 1, statusCode: 500, error: null },
      { event: 'task.done', attempt: 2, statusCode: 500, error: null },
      { event: 'task.done', attempt: 3, statusCode: 204, error: null },
    ]);
    expect(accepted('/flaky')).toHaveLength(1);
    const message = oneMessage('/flaky');
    const { callbacks: _, callbackUrl: __, __typename, result, ...fields } = task;
    expect(message).toEqual({
      type: 'task.done',
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      data: { ...fields, result: { ...result, url: expect.stringMatching(/^\/images\/[0-9a-f-]{36}\?exp=\d+&sig=/) } },
    });
    expect(message.data).toMatchObject({ status: 'DONE', progress: 1, result: { format: 'PNG', width: 32, height: 24 } });
    // The signed URL in the message works without a key.
    const download = await fetch(`${service.url}${message.data.result!.url}`);
    expect(download.status).toBe(200);
    expect(download.headers.get('content-type')).toBe('image/png');
    // Delivered: nothing more is due for it.
    expect(await infra.sql(`SELECT "attempts", "deliveredAt" IS NOT NULL AS "delivered", "nextAttemptAt" FROM "Callback" WHERE "taskId" = $1`, [id])).toEqual([
      { attempts: 3, delivered: true, nextAttemptAt: null },
    ]);
  });
});

describe('a receiver that hangs', () => {
  it('has each attempt time out while the workers go on with their jobs; the first answered attempt ends it', async () => {
    let hanging = true;
    receiver.on('/hang', () => (hanging ? 'hang' : 200));
    const id = await create(receiver.url('/hang'));
    await attemptsRecorded(id, (callbacks) => callbacks.length >= 1);
    // Meanwhile the workers run other tasks to the end, the callback still undelivered.
    const others = await Promise.all([create(receiver.url('/others')), create(receiver.url('/others'))]);
    for (const other of others) await until(() => taskOf(other), (task) => task.status === 'DONE', 120_000);
    expect(accepted('/hang')).toHaveLength(0);
    hanging = false;
    const task = await attemptsRecorded(id, (callbacks) => callbacks.at(-1)?.statusCode === 200);
    const timedOut = task.callbacks.slice(0, -1);
    expect(timedOut.length).toBeGreaterThanOrEqual(1);
    for (const [i, attempt] of timedOut.entries()) {
      expect(attempt).toMatchObject({ event: 'task.done', attempt: i + 1, statusCode: null, error: `timed out after ${TIMEOUT_MS} ms (CALLBACK_TIMEOUT_MS)` });
    }
    expect(task.callbacks.at(-1)).toMatchObject({ attempt: task.callbacks.length, statusCode: 200, error: null });
    expect(accepted('/hang')).toHaveLength(1);
    expect(oneMessage('/hang').data).toMatchObject({ id, status: 'DONE' });
  });
});

describe('a receiver that is down while every worker is killed mid-attempt and Redis is flushed', () => {
  it('gets the message once it is back: the killed attempt is recorded without outcome, nothing is lost', async () => {
    receiver.on('/down', () => 'hang');
    const id = await create(receiver.url('/down'));
    await until(async () => receiver.open('/down'), (open) => open === 1, 120_000, 20);
    // An attempt is in flight: kill every worker (the supervisor starts new ones), flush Redis,
    // and take the receiver down.
    const workers = childPids(service.child.pid!, 'tasklane-worker');
    expect(workers).toHaveLength(2);
    for (const pid of workers) process.kill(pid, 'SIGKILL');
    await flushPrefix(infra.redis, infra.redisPrefix);
    await receiver.down();
    receiver.on('/down', () => 202);
    // The new workers find the lease of the killed attempt run out, record it, and try again: refused.
    const failing = await attemptsRecorded(id, (callbacks) => callbacks.some((c) => /ECONNREFUSED/.test(c.error ?? '')));
    expect(failing.callbacks[0]).toMatchObject({
      event: 'task.done',
      attempt: 1,
      statusCode: null,
      error: 'no outcome recorded: the delivering process stopped (or lost PostgreSQL) during the attempt',
    });
    expect(failing.callbacks[1]).toMatchObject({ attempt: 2, statusCode: null, error: expect.stringContaining('connect ECONNREFUSED 127.0.0.1') });
    await receiver.up();
    const task = await attemptsRecorded(id, (callbacks) => callbacks.at(-1)?.statusCode === 202);
    expect(task.callbacks.map((c) => c.attempt)).toEqual(task.callbacks.map((_, i) => i + 1));
    expect(accepted('/down')).toHaveLength(1);
    expect(oneMessage('/down').data).toMatchObject({ id, status: 'DONE' });
    expect(await infra.sql(`SELECT "event" FROM "Callback" WHERE "taskId" = $1`, [id])).toEqual([{ event: 'task.done' }]);
  });
});

describe('task.failed and task.deleted', () => {
  it('sends task.failed when a task fails, then task.deleted when it is deleted: two messages', async () => {
    const truncated = (await photo(400, 300)).subarray(0, 2000);
    const id = await create(receiver.url('/failed'), true, truncated);
    let task = await attemptsRecorded(id, (callbacks) => callbacks.length === 1);
    expect(task).toMatchObject({ status: 'FAILED', callbacks: [{ event: 'task.failed', attempt: 1, statusCode: 204, error: null }] });
    expect((await alice.request(DeleteTask, { id })).data?.deleteTask).toMatchObject({ status: 'DELETED' });
    task = await attemptsRecorded(id, (callbacks) => callbacks.length === 2);
    expect(task.callbacks.map((c) => [c.event, c.statusCode])).toEqual([
      ['task.failed', 204],
      ['task.deleted', 204],
    ]);
    const [failed, deleted] = requestsOf('/failed');
    expect(failed.headers['webhook-id']).not.toBe(deleted.headers['webhook-id']);
    expect(verified(secret, failed)).toMatchObject({
      type: 'task.failed',
      data: { id, status: 'FAILED', error: expect.stringMatching(/cannot process image/), resultOfJob: null, result: null },
    });
    expect(verified(secret, deleted)).toMatchObject({ type: 'task.deleted', data: { id, status: 'DELETED', result: null } });
  });

  it('sends task.deleted alone for a task deleted before it ran', async () => {
    const id = await create(receiver.url('/deleted'), false);
    await alice.request(DeleteTask, { id });
    const task = await attemptsRecorded(id, (callbacks) => callbacks.length === 1);
    expect(task.callbacks).toMatchObject([{ event: 'task.deleted', attempt: 1, statusCode: 204 }]);
    expect(oneMessage('/deleted')).toMatchObject({ type: 'task.deleted', data: { id, status: 'DELETED', attempts: 0, finishedAt: expect.any(String) } });
  });
});

describe('REST', () => {
  it('takes callbackUrl as a form field, shows it on the task, and refuses a bad one naming the field', async () => {
    const form = new FormData();
    form.append('jobDefinition', 'IMAGE_RESIZE');
    form.append('width', '16');
    form.append('callbackUrl', receiver.url('/rest'));
    form.append('image', new Blob([image as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' }), 'photo.jpg');
    const created = await fetch(`${service.url}/api/tasks`, { method: 'POST', headers: { authorization: `Bearer ${alice.key}` }, body: form });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: string };
    const run = await fetch(`${service.url}/api/tasks/${id}/run`, { method: 'POST', headers: { authorization: `Bearer ${alice.key}` } });
    expect(await run.json()).toMatchObject({ id, status: 'QUEUED', callbackUrl: receiver.url('/rest') });
    await attemptsRecorded(id, (callbacks) => callbacks.length === 1);
    expect(oneMessage('/rest')).toMatchObject({ type: 'task.done', data: { id, status: 'DONE' } });

    form.set('callbackUrl', 'ftp://127.0.0.1/hook');
    const refused = await fetch(`${service.url}/api/tasks`, { method: 'POST', headers: { authorization: `Bearer ${alice.key}` }, body: form });
    expect([refused.status, await refused.json()]).toEqual([
      400,
      { error: 'InvalidInput', message: 'callbackUrl must be http or https, not ftp', field: 'callbackUrl' },
    ]);
  });
});

describe('metrics', () => {
  it('counts attempts by outcome and shows the oldest pending message\'s age', async () => {
    const scrape = async () => parsePrometheus(await (await fetch(`${service.url}/metrics`)).text());
    // Worker counts arrive within METRICS_PUSH_INTERVAL_MS; killed workers took theirs along.
    // Worker counts arrive within METRICS_PUSH_INTERVAL_MS (killed workers took theirs along); a
    // message of the tests above may still be on its way.
    const metrics = await until(
      scrape,
      (m) => m.sum('tasklane_callback_deliveries_total', { outcome: 'delivered' }) >= 1 && m.sum('tasklane_callbacks_pending') === 0,
      60_000,
      200,
    );
    expect(metrics.sum('tasklane_callback_deliveries_total', { outcome: 'failed' })).toBeGreaterThanOrEqual(1);
    expect(metrics.has('tasklane_callback_oldest_pending_seconds')).toBe(true);
    expect(metrics.sum('tasklane_callback_oldest_pending_seconds')).toBe(0);
  });
});

describe('in the end', () => {
  it('every message was accepted exactly once, and every request carried a valid signature', async () => {
    const byId = new Map<string, number>();
    for (const request of receiver.requests) {
      expect(request.verification).toBe('valid');
      const ok = request.status !== null && request.status >= 200 && request.status < 300 ? 1 : 0;
      byId.set(request.headers['webhook-id'], (byId.get(request.headers['webhook-id']) ?? 0) + ok);
    }
    const rows = await infra.sql<{ id: string; delivered: boolean }>(`SELECT "id", "deliveredAt" IS NOT NULL AS "delivered" FROM "Callback"`);
    expect(rows.every((row) => row.delivered)).toBe(true);
    expect(Object.fromEntries(byId)).toEqual(Object.fromEntries(rows.map((row) => [row.id, 1])));
  });
});
