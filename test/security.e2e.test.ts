// Security and abuse limits, each tested as the attack would be made, against real
// processes (supervisor + API + workers, extra API processes) over HTTP, SSE and WebSocket.
// test/core.e2e.test.ts already covers: foreign ids on task/runTask/deleteTask/list/image by
// key, tampered signature, no auth, SVG/PDF/text/corrupt as InvalidImage, truncated JPEG.
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { getIntrospectionQuery } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphql } from './gql/index.ts';
import { client, until, type Client } from './helpers/client.ts';
import { childPids } from './helpers/faults.ts';
import { photo, pngBomb } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { countsReach, NOTHING_OPEN, reserveStream, singleConnection, within } from './helpers/live.ts';
import { postChunks, sse, sseSingle, ws } from './helpers/security-clients.ts';
import { SCRIPTS, startProcess, startService, testEnv, type Service } from './helpers/service.ts';
import { createTask } from './helpers/tasks.ts';

const CreateTaskSec = graphql(`
  mutation CreateTaskSec($input: CreateTaskInput!) {
    createTask(input: $input) {
      __typename
      ... on Task { id status result { id url } }
      ... on Error { message }
      ... on TooManyTasks { limit }
    }
  }
`);

const TaskSec = graphql(`
  query TaskSec($id: ID!) {
    task(id: $id) {
      __typename
      ... on Task { id status error attempts source { id url } result { id url } events { status } }
      ... on Error { message }
    }
  }
`);

const RunTaskSec = graphql(`
  mutation RunTaskSec($id: ID!) {
    runTask(id: $id) { __typename ... on Task { id status } ... on Error { message } }
  }
`);

const DeleteTaskSec = graphql(`
  mutation DeleteTaskSec($id: ID!) {
    deleteTask(id: $id) { __typename ... on Task { id status } }
  }
`);

const ListSec = graphql(`
  query ListSec($first: Int, $after: String) {
    tasks(first: $first, after: $after) { edges { node { id } } }
  }
`);

const MiB = 1024 * 1024;
const UPLOAD_LIMIT = 4 * MiB;
const TASK_UPDATED = 'subscription ($id: ID!) { taskUpdated(id: $id) { id status version } }';
const TASKS_UPDATED = 'subscription { tasksUpdated { id status version } }';

let infra: TestInfra;
let service: Service;
let alice: Client;
let mallory: Client;

beforeAll(async () => {
  infra = await createInfra('security');
  service = await startService(infra, { MAX_UPLOAD_BYTES: String(UPLOAD_LIMIT) });
  alice = client(service.url, await infra.createKey('alice'));
  mallory = client(service.url, await infra.createKey('mallory'));
});

afterAll(async () => {
  await service?.stop();
  await infra?.dispose();
});

async function create(c: Client, bytes: Uint8Array, resize: Record<string, unknown> = { width: 8 }, run = false) {
  return c.upload(
    CreateTaskSec,
    { input: { jobDefinition: 'IMAGE_RESIZE', image: null as unknown as File, resize, run } },
    { path: 'variables.input.image', bytes, name: 'photo.jpg', type: 'image/jpeg' },
  );
}

async function settled(c: Client, id: string) {
  const response = await until(
    () => c.request(TaskSec, { id }),
    (r) => r.data?.task.__typename === 'Task' && ['DONE', 'FAILED', 'DELETED'].includes(r.data.task.status),
  );
  const task = response.data!.task;
  if (task.__typename !== 'Task') throw new Error('not a task');
  return task;
}

const counts = () =>
  infra.sql<{ tasks: number; images: number }>(`SELECT (SELECT count(*)::int FROM "Task") AS tasks, (SELECT count(*)::int FROM "Image") AS images`);

/**
 * The Accept of GraphQL over HTTP's own media type: a request error (parse, validation,
 * variables) is a 400 there; with application/json (or no Accept) the spec asks for 200.
 */
const GRAPHQL_RESPONSE = { accept: 'application/graphql-response+json' };

async function post(url: string, key: string | null, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

/** Resident and peak resident memory of a process, in MB, from /proc. */
function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

describe('tenancy', () => {
  it('a foreign task id on both subscriptions (SSE in both modes, WebSocket) looks exactly like a missing one', async () => {
    const id = await createTask(alice, await photo(32, 32), { width: 8 });
    const missing = '0b5e7c1e-8f4a-4c2d-9e1f-3a2b1c0d9e8f';
    const refusal = (taskId: string) => ({ message: `task ${taskId} does not exist`, extensions: { code: 'TASK_DOES_NOT_EXIST' } });
    for (const open of [sse, sseSingle, ws]) {
      const foreign = await open(service.url, mallory.key!, TASK_UPDATED, { id });
      const none = await open(service.url, mallory.key!, TASK_UPDATED, { id: missing });
      await Promise.all([foreign.ended, none.ended]);
      expect(foreign.messages).toMatchObject([{ errors: [refusal(id)] }]);
      expect(none.messages).toMatchObject([{ errors: [refusal(missing)] }]);
      expect(foreign.messages[0].data ?? null).toBeNull();
    }
    // The owner does get the stream.
    const own = await sse(service.url, alice.key!, TASK_UPDATED, { id });
    await own.waitFor((m) => (m.data as { taskUpdated?: { id: string } })?.taskUpdated?.id === id);
    own.close();
  });

  it("tasksUpdated carries only the caller's own tasks", async () => {
    await countsReach(service.url, NOTHING_OPEN);
    const dashboard = await sse(service.url, mallory.key!, TASKS_UPDATED);
    const dashboardWs = ws(service.url, mallory.key!, TASKS_UPDATED);
    await countsReach(service.url, { subscriptions: 2 }, 10_000); // both subscribed (no event is lost after this)
    // Alice's changes come first: if they leaked, they would arrive before mallory's own.
    const alices = [await createTask(alice, await photo(16, 16), { width: 4 }, true)];
    await settled(alice, alices[0]);
    const own = await createTask(mallory, await photo(16, 16), { width: 8 });
    for (const stream of [dashboard, dashboardWs]) {
      await stream.waitFor((m) => (m.data as { tasksUpdated?: { id: string } })?.tasksUpdated?.id === own);
      const seen = stream.messages.map((m) => (m.data as { tasksUpdated: { id: string } }).tasksUpdated.id);
      expect(seen).toEqual([own]);
      stream.close();
    }
  });

  it("the list refuses another key's task as a cursor, exactly like a missing one", async () => {
    const id = await createTask(alice, await photo(16, 16), { width: 8 });
    for (const after of [id, '0b5e7c1e-8f4a-4c2d-9e1f-3a2b1c0d9e8f']) {
      const response = await mallory.request(ListSec, { after });
      expect(response.errors).toMatchObject([{ message: 'after is not a cursor of this list', extensions: { code: 'BAD_USER_INPUT', field: 'after' } }]);
    }
  });
});

describe('image URLs', () => {
  const secret = async () => (await infra.sql<{ value: string }>(`SELECT value FROM "Setting" WHERE key = 'imageUrlSigningSecret'`))[0]?.value;
  const sign = (key: string, id: string, exp: number) => createHmac('sha256', key).update(`${id}.${exp}`).digest('base64url');

  it('refuses an expired signature (403) even though it is authentic, and a signature moved to another image or expiry', async () => {
    const id = await createTask(alice, await photo(16, 16), { width: 8 });
    const task = (await alice.request(TaskSec, { id })).data!.task;
    if (task.__typename !== 'Task') throw new Error('not a task');
    const imageId = task.source!.id;
    const key = await secret();
    expect(key).toMatch(/^[\w-]{43}$/); // generated: 32 random bytes, base64url
    // The URL we hand out verifies with that secret: the test signs like the server.
    const handedOut = new URL(task.source!.url, service.url);
    expect(handedOut.searchParams.get('sig')).toBe(sign(key, imageId, Number(handedOut.searchParams.get('exp'))));

    const past = Math.floor(Date.now() / 1000) - 60;
    const expired = await fetch(`${service.url}/images/${imageId}?exp=${past}&sig=${sign(key, imageId, past)}`);
    expect([expired.status, await expired.text()]).toEqual([403, 'expired signature\n']);
    const later = Number(handedOut.searchParams.get('exp')) + 86_400;
    const extended = await fetch(`${service.url}/images/${imageId}?exp=${later}&sig=${handedOut.searchParams.get('sig')}`);
    expect([extended.status, await extended.text()]).toEqual([403, 'invalid signature\n']);
    const other = await createTask(alice, await photo(16, 16), { width: 8 });
    const otherImage = ((await alice.request(TaskSec, { id: other })).data!.task as { source: { id: string } }).source.id;
    const moved = await fetch(`${service.url}/images/${otherImage}?${handedOut.searchParams}`);
    expect(moved.status).toBe(403);
    expect((await fetch(handedOut)).status).toBe(200);
  });

  it('keeps the generated signing secret across restarts and processes; SIGNING_SECRET overrides it', async () => {
    const id = await createTask(alice, await photo(16, 16), { width: 8 });
    const url = ((await alice.request(TaskSec, { id })).data!.task as { source: { url: string } }).source.url;
    const env = testEnv(infra, { LOG_LEVEL: 'warn' });
    {
      // Another API process, started after the secret was generated (what a restart is).
      const api = startProcess(SCRIPTS.api, { ...env, LOG_LEVEL: 'info' });
      const [, port] = await api.waitFor(/"port":(\d+)[^\n]*api listening/, 110_000);
      expect((await fetch(`http://127.0.0.1:${port}${url}`)).status).toBe(200);
      await api.stop();
    }
    expect(await infra.sql(`SELECT count(*)::int AS n FROM "Setting" WHERE key = 'imageUrlSigningSecret'`)).toEqual([{ n: 1 }]);

    const configured = 'x'.repeat(40);
    const api = startProcess(SCRIPTS.api, { ...env, LOG_LEVEL: 'info', SIGNING_SECRET: configured });
    const [, port] = await api.waitFor(/"port":(\d+)[^\n]*api listening/, 110_000);
    try {
      expect((await fetch(`http://127.0.0.1:${port}${url}`)).status).toBe(403);
      const there = await client(`http://127.0.0.1:${port}`, alice.key).request(TaskSec, { id });
      const signed = new URL((there.data!.task as { source: { url: string } }).source.url, 'http://x');
      const imageId = signed.pathname.split('/').at(-1)!;
      expect(signed.searchParams.get('sig')).toBe(sign(configured, imageId, Number(signed.searchParams.get('exp'))));
      expect((await fetch(`http://127.0.0.1:${port}${signed.pathname}${signed.search}`)).status).toBe(200);
    } finally {
      await api.stop();
    }
  }, 240_000); // starts API processes one after the other: slow on a loaded machine
});

describe('API keys', () => {
  it('revoking with the CLI ends open SSE (both modes) and WebSocket subscriptions at once, with UNAUTHENTICATED', async () => {
    const key = await infra.createKey('dave');
    await countsReach(service.url, NOTHING_OPEN);
    const overSse = await sse(service.url, key, TASKS_UPDATED);
    const overSingle = sseSingle(service.url, key, TASKS_UPDATED);
    const overWs = ws(service.url, key, TASKS_UPDATED);
    await countsReach(service.url, { subscriptions: 3 }, 10_000); // all three listen for the revocation
    const revoke = startProcess(SCRIPTS.key, testEnv(infra, { LOG_LEVEL: 'silent' }), ['revoke', 'dave']);
    expect(await revoke.exited).toBe(0);
    await Promise.all([overSse.ended, overSingle.ended, overWs.ended]);
    overSingle.close();
    for (const stream of [overSse, overSingle, overWs]) {
      expect(stream.messages).toMatchObject([{ errors: [{ message: 'the API key was revoked', extensions: { code: 'UNAUTHENTICATED' } }] }]);
    }
    const after = await post(service.url, key, { query: '{ tasks { edges { node { id } } } }' });
    expect(after.status).toBe(401);
    // A new WebSocket with the revoked key is refused at connection.
    const again = ws(service.url, key, TASKS_UPDATED);
    await again.ended;
    expect(again.messages[0].errors![0].message).toMatch(/closed: 4401/); // Unauthorized: final for graphql-ws clients
  }, 180_000); // runs the key CLI (a process start)
});

describe('uploads', () => {
  const operations = JSON.stringify({
    query: 'mutation ($f: File!) { createTask(input: {jobDefinition: IMAGE_RESIZE, image: $f, resize: {width: 8}}) { __typename } }',
    variables: { f: null },
  });
  const preamble = (boundary: string) =>
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${operations}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n{"0":["variables.f"]}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="0"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
    );
  function* body(boundary: string, fileBytes: number) {
    yield preamble(boundary);
    const jpegStart = Buffer.alloc(64 * 1024, 0x55);
    jpegStart.set([0xff, 0xd8, 0xff]);
    for (let sent = 0; sent < fileBytes; sent += jpegStart.byteLength) yield sent === 0 ? jpegStart : Buffer.alloc(64 * 1024, 0x55);
    yield Buffer.from(`\r\n--${boundary}--\r\n`);
  }
  const tooLarge = (message: RegExp | string) => ({ errors: [{ message, extensions: { code: 'PAYLOAD_TOO_LARGE' } }] });

  it('refuses a body whose Content-Length is over MAX_UPLOAD_BYTES with 413, before reading it', async () => {
    const before = await counts();
    const total = 16 * MiB;
    const response = await postChunks(
      `${service.url}/graphql`,
      { authorization: `Bearer ${alice.key}`, 'content-type': 'multipart/form-data; boundary=b0', 'content-length': String(total) },
      (function* () {
        // Declares 16 MiB; the answer comes without the body being read.
        for (let i = 0; i < total / (64 * 1024); i++) yield Buffer.alloc(64 * 1024, 1);
      })(),
    );
    expect(response.status).toBe(413);
    expect(JSON.parse(response.body)).toEqual(
      tooLarge(`the request body is ${total} bytes, over the limit of ${UPLOAD_LIMIT} bytes (MAX_UPLOAD_BYTES)`),
    );
    expect(await counts()).toEqual(before);
  });

  it('counts a chunked body (no Content-Length) and refuses it with 413 as soon as it passes the limit', async () => {
    const before = await counts();
    const total = 64 * MiB;
    const response = await postChunks(
      `${service.url}/graphql`,
      { authorization: `Bearer ${alice.key}`, 'content-type': 'multipart/form-data; boundary=b1' },
      body('b1', total),
    );
    expect(response.status).toBe(413);
    expect(JSON.parse(response.body)).toEqual(tooLarge(`the request body is over the limit of ${UPLOAD_LIMIT} bytes (MAX_UPLOAD_BYTES)`));
    // Refused mid-stream: the answer came before the whole body was sent.
    expect(response.sent).toBeLessThan(total);
    expect(await counts()).toEqual(before);
  });

  it('refuses a chunked JSON body over the limit the same way', async () => {
    const response = await postChunks(
      `${service.url}/graphql`,
      { authorization: `Bearer ${alice.key}`, 'content-type': 'application/json' },
      (function* () {
        yield Buffer.from('{"query":"{ __typename }","variables":{"pad":"');
        for (let i = 0; i < 256; i++) yield Buffer.alloc(64 * 1024, 0x61);
        yield Buffer.from('"}}');
      })(),
    );
    expect(response.status).toBe(413);
    expect(JSON.parse(response.body)).toMatchObject({ errors: [{ extensions: { code: 'PAYLOAD_TOO_LARGE' } }] });
  });

  it('the REST facade refuses a chunked oversize body and a second file the same way, in its own format', async () => {
    const before = await counts();
    const chunked = await postChunks(
      `${service.url}/api/tasks`,
      { authorization: `Bearer ${alice.key}`, 'content-type': 'multipart/form-data; boundary=b2' },
      (function* () {
        yield Buffer.from('--b2\r\nContent-Disposition: form-data; name="width"\r\n\r\n8\r\n--b2\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n');
        // A JPEG's first bytes, so that the limit refuses it (bytes that are no image at all
        // are refused from their head, InvalidImage, before the limit is reached).
        for (let i = 0; i < 256; i++) yield i === 0 ? Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(64 * 1024 - 3, 0x55)]) : Buffer.alloc(64 * 1024, 0x55);
        yield Buffer.from('\r\n--b2--\r\n');
      })(),
    );
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body)).toMatchObject({ error: 'PayloadTooLarge', message: `the request body is over the limit of ${UPLOAD_LIMIT} bytes (MAX_UPLOAD_BYTES)` });
    const form = new FormData();
    form.append('width', '8');
    form.append('image', new Blob([await photo(16, 16)]), 'a.jpg');
    form.append('extra', new Blob([await photo(16, 16)]), 'b.jpg');
    const twoFiles = await fetch(`${service.url}/api/tasks`, { method: 'POST', headers: { authorization: `Bearer ${alice.key}` }, body: form });
    expect(twoFiles.status).toBe(413);
    expect(await twoFiles.json()).toMatchObject({ error: 'PayloadTooLarge', message: 'a request may carry one file (the image); this one carries more' });
    expect(await counts()).toEqual(before);
  });

  it('refuses a second file with 413, storing nothing', async () => {
    const before = await counts();
    const form = new FormData();
    form.append('operations', operations);
    form.append('map', JSON.stringify({ 0: ['variables.f'], 1: ['variables.g'] }));
    form.append('0', new Blob([await photo(16, 16)]), 'a.jpg');
    form.append('1', new Blob([await photo(16, 16)]), 'b.jpg');
    const response = await fetch(`${service.url}/graphql`, { method: 'POST', headers: { authorization: `Bearer ${alice.key}` }, body: form });
    expect(response.status).toBe(413);
    expect(await response.json()).toEqual(tooLarge('a request may carry one file (the image); this one carries more'));
    expect(await counts()).toEqual(before);
  });

  it('refuses a real pixel bomb (a valid 18 KB PNG of 144 MP) from its header; the API memory stays flat', async () => {
    const bomb = pngBomb(12_000, 12_000, true);
    expect(bomb.byteLength).toBeLessThan(20_000);
    const [api] = childPids(service.child.pid!, 'tasklane-api');
    const before = await counts();
    await create(alice, bomb); // warm-up (first-use allocations are not the bomb's)
    const memoryBefore = memory(api);
    for (let round = 0; round < 5; round++) {
      const responses = await Promise.all(Array.from({ length: 4 }, () => create(alice, bomb)));
      for (const response of responses) {
        expect(response.data?.createTask).toEqual({
          __typename: 'InvalidImage',
          message: 'image is 12000x12000 = 144000000 pixels, over the limit of 50000000 (MAX_INPUT_PIXELS)',
        });
      }
    }
    const memoryAfter = memory(api);
    // Decoding even one (interlaced: not streamable) takes ~150 MB more and ~12 s of CPU here.
    expect(memoryAfter.peak - memoryBefore.peak).toBeLessThan(64);
    console.info(`[measure] API memory around 20 pixel bombs: rss ${memoryBefore.rss.toFixed(0)} → ${memoryAfter.rss.toFixed(0)} MB, peak ${memoryBefore.peak.toFixed(0)} → ${memoryAfter.peak.toFixed(0)} MB`);
    expect(await counts()).toEqual(before);
  });

  it('a pixel bomb that reached a worker anyway (stored directly) fails once, at once, without decoding', async () => {
    const bomb = pngBomb(12_000, 12_000, true);
    const imageId = randomUUID();
    const stored = await infra.blobStore.put(`images/${imageId}`, bomb, { contentType: 'image/png' });
    const [imageRow] = await infra.sql<{ id: string }>(
      `INSERT INTO "Image" ("id", "ownerId", "format", "width", "height", "byteSize", "storageKey", "sha256")
       VALUES ($1, 'alice', 'PNG', 100, 100, $2, $3, $4) RETURNING id`,
      [imageId, bomb.byteLength, `images/${imageId}`, stored.sha256],
    );
    const [taskRow] = await infra.sql<{ id: string }>(
      `INSERT INTO "Task" ("id", "status", "jobDefinition", "params", "ownerId", "sourceImageId", "version", "updatedAt")
       VALUES (gen_random_uuid(), 'CREATED', 'IMAGE_RESIZE', $1, 'alice', $2, 1, now()) RETURNING id`,
      [JSON.stringify({ width: 12_000, height: null, fit: 'COVER', format: 'PNG', quality: null, withoutEnlargement: false }), imageRow.id],
    );
    // Executors start with a worker's first job: make sure every worker has one, then note
    // each executor's peak memory. (Unlimited, this bomb takes ~150 MB more to decode.)
    const warmIds = await Promise.all([1, 2, 3, 4].map(() => createTask(alice, pngBomb(64, 64), { width: 8 }, true)));
    await Promise.all(warmIds.map((id) => settled(alice, id)));
    const executors = () => childPids(service.child.pid!, 'tasklane-worker').flatMap((worker) => childPids(worker, 'tasklane-executor'));
    const peaksBefore = new Map(executors().map((pid) => [pid, memory(pid).peak]));
    expect(peaksBefore.size).toBeGreaterThan(0);
    expect((await alice.request(RunTaskSec, { id: taskRow.id })).data?.runTask).toMatchObject({ status: 'QUEUED' });
    const failed = await settled(alice, taskRow.id);
    expect(failed).toMatchObject({ status: 'FAILED', attempts: 1, result: null });
    expect(failed.error).toMatch(/pixel limit/);
    // No executor died, and none grew. (One that started for this job is compared with the
    // highest peak of those that already ran real jobs.)
    const after = executors();
    expect(after).toEqual(expect.arrayContaining([...peaksBefore.keys()]));
    const highest = Math.max(...peaksBefore.values());
    const growth = Math.max(...after.map((pid) => memory(pid).peak - (peaksBefore.get(pid) ?? highest)));
    console.info(`[measure] executor peak memory growth for a 144 MP bomb: ${growth.toFixed(1)} MB`);
    expect(growth).toBeLessThan(64);
  });

  it('keeps serving after all of it: an ordinary upload still completes', async () => {
    const id = await createTask(alice, await photo(200, 100), { width: 20 }, true);
    expect(await settled(alice, id)).toMatchObject({ status: 'DONE' });
    expect((await fetch(`${service.url}/ready`)).status).toBe(200);
  });
});

describe('plain (non-upload) requests', () => {
  const LIST = 'query ($s: [TaskStatus!]) { tasks(status: $s) { edges { cursor } } }';
  /** The request: `tasks(status: $s)` with 2,000,000 × DONE, 16 MB of JSON. */
  function* statusList(items: number) {
    yield Buffer.from(`{"query":${JSON.stringify(LIST)},"variables":{"s":[`);
    const batch = Buffer.from('"DONE", '.repeat(10_000));
    for (let sent = 0; sent < items; sent += 10_000) yield batch;
    yield Buffer.from('"DONE"]}}');
  }
  const bytesOf = (items: number) => [...statusList(items)].reduce((sum, chunk) => sum + chunk.byteLength, 0);

  it('refuses 2,000,000 statuses (16 MB) with 413 at once, declared or chunked; /health and memory unaffected', async () => {
    const [api] = childPids(service.child.pid!, 'tasklane-api');
    const before = memory(api);
    const total = bytesOf(2_000_000);
    expect(total).toBeGreaterThan(16_000_000);
    for (const headers of [{ 'content-length': String(total) }, {}] as Record<string, string>[]) {
      const started = performance.now();
      const health = fetch(`${service.url}/health`).then(() => performance.now() - started);
      const response = await postChunks(`${service.url}/graphql`, { authorization: `Bearer ${alice.key}`, 'content-type': 'application/json', ...headers }, statusList(2_000_000));
      const ms = performance.now() - started;
      expect(response.status).toBe(413);
      expect(JSON.parse(response.body)).toEqual({
        errors: [{ message: expect.stringMatching(/over the limit of 1048576 bytes \(MAX_REQUEST_BYTES\)$/), extensions: { code: 'PAYLOAD_TOO_LARGE' } }],
      });
      // How much the client got to send says nothing here: after its early answer the server
      // keeps reading and discarding until the client stops (a lingering close, so that the
      // answer is not lost to a reset). That the body was never held shows in the API's peak
      // memory below.
      console.info(`[measure] 16 MB status list (${headers['content-length'] ? 'Content-Length' : 'chunked'}): 413 in ${ms.toFixed(0)} ms after ${(response.sent / 1024 / 1024).toFixed(1)} MiB sent; /health answered in ${(await health).toFixed(0)} ms`);
    }
    const after = memory(api);
    console.info(`[measure] API memory around two 16 MB requests: rss ${before.rss.toFixed(0)} → ${after.rss.toFixed(0)} MB, peak ${before.peak.toFixed(0)} → ${after.peak.toFixed(0)} MB`);
    expect(after.peak - before.peak).toBeLessThan(64);
  });

  it('refuses the longest status list that fits in MAX_REQUEST_BYTES (130,000 items) before coercing it: BAD_USER_INPUT', async () => {
    expect(bytesOf(130_000)).toBeLessThan(1024 * 1024);
    const started = performance.now();
    const response = await postChunks(`${service.url}/graphql`, { authorization: `Bearer ${alice.key}`, 'content-type': 'application/json', ...GRAPHQL_RESPONSE }, statusList(130_000));
    const ms = performance.now() - started;
    expect([response.status, JSON.parse(response.body)]).toEqual([
      400,
      { errors: [{ message: '$s has 130001 items, more than the 100 a list may hold', extensions: { code: 'BAD_USER_INPUT' } }] },
    ]);
    console.info(`[measure] 130,001-item status list (1 MB): 400 in ${ms.toFixed(0)} ms`);
  });
});

describe('GraphQL documents', () => {
  const refused = (limit: string, message: string) => ({
    status: 400,
    body: { errors: [{ message, extensions: { code: 'GRAPHQL_VALIDATION_FAILED', limit } }] },
  });
  const ask = async (query: string, key = alice.key) => {
    const { status, body } = await post(service.url, key, { query }, GRAPHQL_RESPONSE);
    return { status, body };
  };

  it('refuses 200 aliases', async () => {
    const query = `{ ${Array.from({ length: 200 }, (_, i) => `a${i}: __typename`).join(' ')} }`;
    expect(await ask(query)).toEqual(refused('GRAPHQL_MAX_ALIASES', 'Aliases limit of 15 exceeded, found 200 (GRAPHQL_MAX_ALIASES)'));
  });

  it('refuses a 16-deep introspection query, and accepts the standard one GraphiQL and codegen send', async () => {
    // __schema, types, fields, type, 11 x ofType, name: 16 levels.
    const deep = `{ __schema { types { fields { type { ${'ofType { '.repeat(11)}name${' }'.repeat(11)} } } } } }`;
    expect(await ask(deep)).toEqual(refused('GRAPHQL_MAX_DEPTH', 'Query depth limit of 15 exceeded, found 16 (GRAPHQL_MAX_DEPTH)'));
    const standard = await ask(
      getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true }),
    );
    expect(standard.status).toBe(200);
    expect(standard.body.data.__schema.queryType).toMatchObject({ name: 'Query' });
  });

  it('refuses a 5000-token query before parsing it', async () => {
    const query = `{ ${'__typename '.repeat(4998)}}`;
    expect(await ask(query)).toEqual(refused('GRAPHQL_MAX_TOKENS', 'The query has more than 1000 tokens (GRAPHQL_MAX_TOKENS)'));
  });

  it('refuses too many directives and too costly a query', async () => {
    const directives = `{ ${Array.from({ length: 11 }, (_, i) => `t${i}: __typename @include(if: true)`).join(' ')} }`;
    expect(await ask(directives)).toEqual(refused('GRAPHQL_MAX_DIRECTIVES', 'Directives limit of 10 exceeded, found 11 (GRAPHQL_MAX_DIRECTIVES)'));
    // One full page with every field is legitimate (cost ~23,300); two of them are not.
    const image = '{ id format width height byteSize url }';
    const page = `tasks(first: 100) { edges { cursor node { id status jobDefinition resize { width height fit format quality withoutEnlargement } source ${image} resultOfJob result ${image} error progress attempts version createdAt updatedAt startedAt finishedAt events { at status message } callbackUrl callbacks { event attempt at statusCode error } } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } }`;
    const one = await ask(`{ ${page} }`);
    expect(one.status).toBe(200);
    const costly = await ask(`{ a: ${page} b: ${page} }`);
    expect(costly.status).toBe(400);
    expect(costly.body.errors[0]).toMatchObject({ message: expect.stringMatching(/^Query Cost limit of 25000 exceeded, found \d+/), extensions: { limit: 'GRAPHQL_MAX_COST' } });
  });

  it('refuses a batched array body', async () => {
    const response = await post(service.url, alice.key, [{ query: '{ __typename }' }, { query: '{ __typename }' }]);
    expect([response.status, response.body]).toEqual([400, { errors: [{ message: 'Batching is not supported.', extensions: { code: 'BAD_REQUEST' } }] }]);
  });

  it('applies the same limits to subscriptions over WebSocket', async () => {
    const aliased = `subscription { ${Array.from({ length: 20 }, (_, i) => `s${i}: tasksUpdated { id }`).join(' ')} }`;
    const stream = ws(service.url, alice.key!, aliased);
    await stream.ended;
    expect(stream.messages[0].errors!.map((e) => e.message)).toContain('Aliases limit of 15 exceeded, found 20 (GRAPHQL_MAX_ALIASES)');
  });

  it('shows GraphiQL and field suggestions in development', async () => {
    const page = await fetch(`${service.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(await page.text()).toMatch(/<title>Tasklane<\/title>/);
    expect((await ask('{ tsks { id } }')).body.errors[0].message).toMatch(/Did you mean "tasks"/);
  });
});

describe('production mode (NODE_ENV=production)', () => {
  let url: string;
  let api: ReturnType<typeof startProcess>;
  beforeAll(async () => {
    api = startProcess(SCRIPTS.api, { ...testEnv(infra), NODE_ENV: 'production' });
    url = `http://127.0.0.1:${(await api.waitFor(/"port":(\d+)[^\n]*api listening/, 110_000))[1]}`;
  });
  afterAll(() => api?.stop());

  it('refuses introspection, both __schema and __type', async () => {
    for (const query of [getIntrospectionQuery(), '{ __type(name: "Task") { fields { name } } }']) {
      const response = await post(url, alice.key, { query }, GRAPHQL_RESPONSE);
      expect(response.status).toBe(400);
      expect(response.body.errors[0].message).toMatch(/^GraphQL introspection has been disabled/);
    }
    expect((await post(url, alice.key, { query: '{ __typename }' })).body).toEqual({ data: { __typename: 'Query' } });
  });

  it('gives no "Did you mean" hints: fields, arguments, enum literals, enum variables', async () => {
    const cases: [unknown, string][] = [
      [{ query: '{ tsks { id } }' }, 'Cannot query field "tsks" on type "Query".'],
      [{ query: '{ tasks(frist: 1) { edges { cursor } } }' }, 'Unknown argument "frist" on field "Query.tasks".'],
      [{ query: '{ tasks(status: [DOEN]) { edges { cursor } } }' }, 'Value "DOEN" does not exist in "TaskStatus" enum.'],
      [
        { query: 'query ($s: [TaskStatus!]) { tasks(status: $s) { edges { cursor } } }', variables: { s: ['DOEN'] } },
        'Variable "$s" got invalid value "DOEN" at "s[0]"; Value "DOEN" does not exist in "TaskStatus" enum.',
      ],
    ];
    for (const [body, message] of cases) {
      const response = await post(url, alice.key, body);
      expect(response.body.errors.map((e: { message: string }) => e.message)).toEqual([message]);
    }
  });

  it('serves no GraphiQL', async () => {
    const page = await fetch(`${url}/graphql`, { headers: { accept: 'text/html' } });
    expect(await page.text()).not.toMatch(/<html/i);
  });
});

describe('quota and rate limit, across two API processes', () => {
  const PER_MINUTE = 12;
  const apis: ReturnType<typeof startProcess>[] = [];
  const urls: string[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 2; i++) apis.push(startProcess(SCRIPTS.api, { ...testEnv(infra), MAX_ACTIVE_TASKS_PER_KEY: '3', RATE_LIMIT_PER_MINUTE: String(PER_MINUTE) }));
    for (const api of apis) urls.push(`http://127.0.0.1:${(await api.waitFor(/"port":(\d+)[^\n]*api listening/, 110_000))[1]}`);
  });
  afterAll(() => Promise.all(apis.map((api) => api.stop())));

  it('holds the active-task quota exactly under concurrent creates on both processes (TooManyTasks)', async () => {
    const key = await infra.createKey('quota');
    const bytes = await photo(16, 16);
    const responses = await Promise.all(Array.from({ length: 8 }, (_, i) => create(client(urls[i % 2], key), bytes)));
    const kinds = responses.map((r) => r.data!.createTask.__typename).sort();
    expect(kinds).toEqual(['Task', 'Task', 'Task', 'TooManyTasks', 'TooManyTasks', 'TooManyTasks', 'TooManyTasks', 'TooManyTasks']);
    expect(responses.find((r) => r.data!.createTask.__typename === 'TooManyTasks')!.data!.createTask).toEqual({
      __typename: 'TooManyTasks',
      limit: 3,
      message: 'this key already has 3 active tasks (CREATED, QUEUED or RUNNING), the most it may hold',
    });
    // A refused create leaves nothing behind.
    expect(await infra.sql(`SELECT (SELECT count(*)::int FROM "Task" WHERE "ownerId" = 'quota') AS tasks, (SELECT count(*)::int FROM "Image" WHERE "ownerId" = 'quota') AS images`)).toEqual([{ tasks: 3, images: 3 }]);
    // Deleting one frees a place.
    const first = responses.find((r) => r.data!.createTask.__typename === 'Task')!.data!.createTask as { id: string };
    expect((await client(urls[1], key).request(DeleteTaskSec, { id: first.id })).data?.deleteTask).toMatchObject({ status: 'DELETED' });
    expect((await create(client(urls[0], key), bytes)).data?.createTask.__typename).toBe('Task');
  });

  it('limits requests per key across both processes (RATE_LIMITED, HTTP 429, Retry-After), other keys unaffected', async () => {
    const key = await infra.createKey('hasty');
    const other = await infra.createKey('patient');
    const query = { query: '{ tasks(first: 1) { edges { cursor } } }' };
    const intervalMs = 60_000 / PER_MINUTE; // one request more is allowed every intervalMs
    // Twice the allowance at once, spread over both processes.
    const started = Date.now();
    const burst = await Promise.all(Array.from({ length: 2 * PER_MINUTE }, (_, i) => post(urls[i % 2], key, query)));
    const elapsed = Date.now() - started;
    const allowed = burst.filter((r) => r.status === 200).length;
    // Shared in Redis: the two processes together allow PER_MINUTE (plus what refilled
    // meanwhile), where two separate counters would allow all of them.
    expect(allowed).toBeGreaterThanOrEqual(PER_MINUTE);
    expect(allowed).toBeLessThanOrEqual(PER_MINUTE + Math.floor(elapsed / intervalMs));
    const limited = burst.find((r) => r.status === 429)!;
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(Math.ceil(intervalMs / 1000));
    expect(limited.body).toEqual({
      errors: [
        {
          message: `rate limit of ${PER_MINUTE} requests per minute per key (RATE_LIMIT_PER_MINUTE) reached; retry after ${retryAfter} s`,
          extensions: { code: 'RATE_LIMITED', retryAfter },
        },
      ],
    });
    expect(burst.filter((r) => r.status !== 200).every((r) => r.status === 429)).toBe(true);
    expect((await post(urls[1], other, query)).status).toBe(200);

    // Subscriptions count too. (Drain the bucket right before: it refills as time passes.) To a
    // task that does not exist: let through, it is refused as missing, so either way it ends at
    // once, and its error says whether the limit refused it.
    let subscribed;
    for (let attempt = 0; attempt < 3; attempt++) {
      await Promise.all(Array.from({ length: 3 }, () => post(urls[1], key, query)));
      subscribed = ws(urls[0], key, TASK_UPDATED, { id: randomUUID() });
      await within(subscribed.ended, 10_000, 'the subscription to be refused');
      subscribed.close();
      if (subscribed.messages[0]?.errors?.[0].extensions?.code === 'RATE_LIMITED') break;
    }
    expect(subscribed!.messages[0].errors![0]).toMatchObject({ extensions: { code: 'RATE_LIMITED' } });

    // After Retry-After, a request is let through again.
    const refused = await post(urls[0], key, query);
    expect(refused.status).toBe(429);
    // A wait of Retry-After itself, not for a state: that this long suffices is what is checked.
    await new Promise((r) => setTimeout(r, Number(refused.headers.get('retry-after')) * 1000 + 200));
    expect((await post(urls[1], key, query)).status).toBe(200);
  });

  it('counts the requests of the single-connection SSE mode too: the reservation, the stream, each operation, on either process', async () => {
    const key = await infra.createKey('streamer');
    const reserved = await reserveStream(urls[0], key);
    expect(reserved.status).toBe(201);
    const stream = await singleConnection(urls[1], await reserved.text(), { key }); // reserved on one process, opened on the other
    try {
      expect(stream.status).toBe(200);
      const started = Date.now();
      const statuses: number[] = [];
      let limited: Response | undefined;
      for (let i = 0; i < 2 * PER_MINUTE; i++) {
        const response = await stream.start(`q${i}`, '{ __typename }', {}, urls[i % 2]);
        statuses.push(response.status);
        if (response.status === 429) limited ??= response;
      }
      const refilled = Math.floor((Date.now() - started) / (60_000 / PER_MINUTE));
      // Two of the allowance went to the reservation and the stream.
      const accepted = statuses.filter((status) => status === 202).length;
      expect(accepted).toBeGreaterThanOrEqual(PER_MINUTE - 2);
      expect(accepted).toBeLessThanOrEqual(PER_MINUTE - 2 + refilled);
      expect(statuses.filter((status) => status !== 202).every((status) => status === 429)).toBe(true);
      const retryAfter = Number(limited!.headers.get('retry-after'));
      expect(await limited!.json()).toMatchObject({ errors: [{ extensions: { code: 'RATE_LIMITED', retryAfter } }] });
      // The accepted ones ran, on the stream; stopping an operation is never refused.
      await Promise.all(statuses.map((status, i) => (status === 202 ? stream.waitForComplete(`q${i}`) : undefined)));
      expect(stream.results('q0')).toEqual([{ data: { __typename: 'Query' } }]);
      expect((await stream.stop('q0', urls[0])).status).toBe(200);
      // And a new reservation is refused alike until the key's requests refill (drained right before: it refills as time passes).
      let drained = 0;
      while ((await stream.start(`drain${drained}`, '{ __typename }', {}, urls[0])).status !== 429) drained++;
      const again = await reserveStream(urls[1], key);
      expect([again.status, (await again.json()).errors[0].extensions.code]).toEqual([429, 'RATE_LIMITED']);
    } finally {
      stream.close();
    }
  });
});
