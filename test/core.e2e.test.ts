// The core, end to end: real `npm start` processes (supervisor, API, workers) on a fresh
// database and Redis prefix, driven over HTTP like a client would.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphql } from './gql/index.ts';
import { client, until, type Client } from './helpers/client.ts';
import { photo, rotatedJpeg } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { scrape } from './helpers/prometheus.ts';
import { SCRIPTS, startProcess, startService, testEnv, type Service } from './helpers/service.ts';
import { createTask } from './helpers/tasks.ts';

const CreateTask = graphql(`
  mutation CreateTask($input: CreateTaskInput!) {
    createTask(input: $input) {
      __typename
      ... on Task { id status version resize { width height fit format quality withoutEnlargement } source { width height format byteSize } }
      ... on Error { message }
      ... on InvalidInput { field }
      ... on TooManyTasks { limit }
    }
  }
`);

const RunTask = graphql(`
  mutation RunTask($id: ID!) {
    runTask(id: $id) {
      __typename
      ... on Task { id status }
      ... on Error { message }
      ... on InvalidTaskState { status }
    }
  }
`);

const DeleteTask = graphql(`
  mutation DeleteTask($id: ID!) {
    deleteTask(id: $id) {
      __typename
      ... on Task { id status source { id } result { id } resultOfJob }
      ... on Error { message }
    }
  }
`);

const GetTask = graphql(`
  query GetTask($id: ID!) {
    task(id: $id) {
      __typename
      ... on Task {
        id status progress attempts version error resultOfJob startedAt finishedAt createdAt updatedAt
        source { id url width height format }
        result { id url width height format byteSize }
        events { at status message }
      }
      ... on Error { message }
    }
  }
`);

const ListTasks = graphql(`
  query ListTasks($first: Int, $after: String, $status: [TaskStatus!]) {
    tasks(first: $first, after: $after, status: $status) {
      edges { cursor node { id status } }
      pageInfo { hasNextPage endCursor }
    }
  }
`);

let infra: TestInfra;
let service: Service;
let alice: Client;
let mallory: Client;
let big: Buffer;

beforeAll(async () => {
  infra = await createInfra('core');
  [service, big] = await Promise.all([startService(infra), photo(2725, 2225)]);
  alice = client(service.url, await infra.createKey('alice'));
  mallory = client(service.url, await infra.createKey('mallory'));
});

afterAll(async () => {
  await service?.stop();
  await infra?.dispose();
});

async function create(c: Client, bytes: Uint8Array, resize: Record<string, unknown>, run = false) {
  const response = await c.upload(
    CreateTask,
    { input: { jobDefinition: 'IMAGE_RESIZE', image: null as unknown as File, resize, run } },
    { path: 'variables.input.image', bytes, name: 'photo.jpg', type: 'image/jpeg' },
  );
  return response;
}

async function settled(c: Client, id: string) {
  return until(
    () => c.request(GetTask, { id }),
    (r) => r.data?.task.__typename === 'Task' && ['DONE', 'FAILED', 'DELETED'].includes(r.data.task.status),
  );
}

describe('processes', () => {
  it('answers /health and /ready, and names its processes', async () => {
    expect((await fetch(`${service.url}/health`)).status).toBe(200);
    const ready = await fetch(`${service.url}/ready`);
    expect(ready.status, await ready.clone().text()).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, postgres: 'ok', redis: 'ok', storage: 'ok' });
    const titles = execFileSync('ps', ['-o', 'args=', '--ppid', String(service.child.pid)]).toString();
    expect(titles).toMatch(/tasklane-api/);
    expect(titles.match(/tasklane-worker/g)).toHaveLength(2);
    expect(execFileSync('ps', ['-o', 'args=', '-p', String(service.child.pid)]).toString()).toMatch(/^tasklane/);
  });
});

describe('authentication', () => {
  it('refuses a missing or wrong key with UNAUTHENTICATED (401)', async () => {
    for (const key of [null, 'tl_not-a-key']) {
      const response = await client(service.url, key).request(ListTasks, {});
      expect(response.status).toBe(401);
      expect(response.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
      expect(response.data ?? null).toBeNull();
    }
  });

  it('creates keys with the CLI (key alone on the last line) and revokes them at once', async () => {
    const env = testEnv(infra, { LOG_LEVEL: 'silent' });
    const created = startProcess(SCRIPTS.key, env, ['create', 'carol']);
    expect(await created.exited).toBe(0);
    const key = created.output().trim().split('\n').at(-1)!;
    expect(key).toMatch(/^tl_[\w-]{43}$/);
    const [stored] = await infra.sql<{ keyHash: string }>(`SELECT "keyHash" FROM "ApiKey" WHERE name = 'carol'`);
    expect(stored.keyHash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored.keyHash).not.toContain(key);
    const carol = client(service.url, key);
    expect((await carol.request(ListTasks, {})).status).toBe(200);
    const revoked = startProcess(SCRIPTS.key, env, ['revoke', 'carol']);
    expect(await revoked.exited).toBe(0);
    expect(revoked.output()).toMatch(/revoked 1 key/);
    const after = await carol.request(ListTasks, {});
    expect(after.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
  });
});

describe('an image-resize task, upload to result', () => {
  it('runs through CREATED → QUEUED → RUNNING → DONE and serves the result through its signed URL', async () => {
    const created = await create(alice, big, { width: 720 });
    expect(created.data?.createTask).toMatchObject({
      __typename: 'Task',
      status: 'CREATED',
      version: 1,
      resize: { width: 720, height: null, fit: 'COVER', format: 'JPEG', quality: null, withoutEnlargement: false },
      source: { width: 2725, height: 2225, format: 'JPEG', byteSize: big.byteLength },
    });
    const id = (created.data!.createTask as { id: string }).id;
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

    const run = await alice.request(RunTask, { id });
    expect(run.data?.runTask).toEqual({ __typename: 'Task', id, status: 'QUEUED' });

    const done = (await settled(alice, id)).data!.task;
    if (done.__typename !== 'Task') throw new Error('not a task');
    expect(done.status).toBe('DONE');
    expect(done.progress).toBe(1);
    expect(done.attempts).toBe(1);
    expect(done.error).toBeNull();
    expect(done.result).toMatchObject({ width: 720, height: 588, format: 'JPEG' });
    expect(done.resultOfJob).toBe(done.result!.id);
    expect(done.events.map((e) => e.status)).toEqual(['CREATED', 'QUEUED', 'RUNNING', 'DONE']);
    expect(new Date(done.finishedAt!).getTime()).toBeGreaterThanOrEqual(new Date(done.startedAt!).getTime());
    expect(done.version).toBeGreaterThanOrEqual(4);

    // The signed URL works with no header at all, as an <img src> would use it.
    expect(done.result!.url).toMatch(/^\/images\/[0-9a-f-]{36}\?exp=\d+&sig=[\w-]+$/);
    const image = await fetch(`${service.url}${done.result!.url}`);
    expect(image.status).toBe(200);
    expect(image.headers.get('content-type')).toBe('image/jpeg');
    const bytes = Buffer.from(await image.arrayBuffer());
    expect(bytes.byteLength).toBe(done.result!.byteSize);
    const meta = await sharp(bytes).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 720, 588]);

    // The owner's key opens it without a signature; a tampered signature is 403.
    const byKey = await fetch(`${service.url}/images/${done.result!.id}`, { headers: { authorization: `Bearer ${alice.key}` } });
    expect(byKey.status).toBe(200);
    const tampered = done.result!.url.replace(/sig=./, (m) => (m.endsWith('A') ? 'sig=B' : 'sig=A'));
    expect((await fetch(`${service.url}${tampered}`)).status).toBe(403);
    const noAuth = await fetch(`${service.url}/images/${done.result!.id}`);
    expect(noAuth.status).toBe(401);
  });

  it('serves downloads from the blob store: ETag/304, Range/206/416, HEAD, caching for the URL\'s lifetime', async () => {
    const id = await createTask(alice, await photo(300, 200), { width: 120 }, true);
    const done = (await settled(alice, id)).data!.task;
    if (done.__typename !== 'Task') throw new Error('not a task');
    const url = `${service.url}${done.result!.url}`;
    const [row] = await infra.sql<{ storageKey: string; sha256: string }>(`SELECT "storageKey", "sha256" FROM "Image" WHERE id = $1`, [done.result!.id]);
    expect(row.storageKey).toBe(`images/${done.result!.id}`);
    expect(await infra.blobKeys()).toContain(row.storageKey);

    const whole = await fetch(url);
    const bytes = Buffer.from(await whole.arrayBuffer());
    expect(whole.status).toBe(200);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(row.sha256);
    const etag = whole.headers.get('etag')!;
    expect(etag).toBe(`"${row.sha256}"`); // strong
    expect(whole.headers.get('accept-ranges')).toBe('bytes');
    expect(whole.headers.get('content-length')).toBe(String(done.result!.byteSize));
    const cache = whole.headers.get('cache-control')!;
    const maxAge = Number(/max-age=(\d+)/.exec(cache)?.[1]);
    const exp = Number(new URL(url).searchParams.get('exp'));
    expect(cache).toMatch(/^private, max-age=\d+, immutable$/);
    expect(maxAge).toBeGreaterThan(0);
    expect(maxAge).toBeLessThanOrEqual(exp - Math.floor(Date.now() / 1000) + 1); // never past the URL's expiry

    const notModified = await fetch(url, { headers: { 'if-none-match': etag } });
    expect(notModified.status).toBe(304);
    expect(notModified.headers.get('etag')).toBe(etag);
    expect((await fetch(url, { headers: { 'if-none-match': '"other"' } })).status).toBe(200);

    const part = await fetch(url, { headers: { range: 'bytes=10-19' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 10-19/${bytes.length}`);
    expect(Buffer.from(await part.arrayBuffer())).toEqual(bytes.subarray(10, 20));
    const tail = await fetch(url, { headers: { range: 'bytes=-5' } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 5));
    const open = await fetch(url, { headers: { range: `bytes=${bytes.length - 3}-` } });
    expect(Buffer.from(await open.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 3));
    for (const range of [`bytes=${bytes.length}-`, 'bytes=5-2', 'pages=1-2']) {
      const refused = await fetch(url, { headers: { range } });
      expect(refused.status, range).toBe(416);
      expect(refused.headers.get('content-range')).toBe(`bytes */${bytes.length}`);
    }
    // If-Range with another validator: the whole image.
    expect((await fetch(url, { headers: { range: 'bytes=0-1', 'if-range': '"other"' } })).status).toBe(200);

    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(bytes.length));
    expect(head.headers.get('content-type')).toBe('image/jpeg');
    expect(head.headers.get('etag')).toBe(etag);

    // With the owner's key (no expiring URL): revalidate every time.
    const byKey = await fetch(`${service.url}/images/${done.result!.id}`, { headers: { authorization: `Bearer ${alice.key}` } });
    expect(byKey.headers.get('cache-control')).toBe('private, no-cache');
    expect(Buffer.from(await byKey.arrayBuffer())).toEqual(bytes);
  });

  it('creates and runs in one call, converting the format', async () => {
    const id = await createTask(alice, await photo(640, 480, 'png'), { width: 64, height: 64, format: 'WEBP', fit: 'CONTAIN' }, true);
    const done = (await settled(alice, id)).data!.task;
    expect(done).toMatchObject({ status: 'DONE', result: { width: 64, height: 64, format: 'WEBP' } });
    if (done.__typename !== 'Task') throw new Error('not a task');
    const response = await fetch(`${service.url}${done.result!.url}`);
    expect(response.headers.get('content-type')).toBe('image/webp');
  });

  it('accepts a TIFF whose directory lies past the checked head (checked on the stored blob), and refuses a fake one leaving no blob', async () => {
    const tiff = await sharp({ create: { width: 800, height: 600, channels: 3, background: '#888' } }).tiff({ compression: 'none' }).toBuffer();
    expect(tiff.readUInt32LE(4)).toBeGreaterThan(256 * 1024); // the IFD is at the end
    const id = await createTask(alice, tiff, { width: 80, format: 'PNG' }, true);
    const done = (await settled(alice, id)).data!.task;
    expect(done).toMatchObject({ status: 'DONE', source: { format: 'TIFF', width: 800, height: 600 }, result: { width: 80, height: 60 } });
    // The same header with garbage where the directory should be: refused after the put, and the blob removed.
    const blobsBefore = await infra.blobKeys();
    const fake = Buffer.concat([tiff.subarray(0, 8), Buffer.alloc(400 * 1024, 7)]);
    const refused = await create(alice, fake, { width: 10 });
    expect(refused.data?.createTask).toMatchObject({ __typename: 'InvalidImage' });
    expect(await infra.blobKeys()).toEqual(blobsBefore);
  });

  it('auto-orients from EXIF end to end', async () => {
    const id = await createTask(alice, await rotatedJpeg(200, 100), { height: 50 }, true);
    const done = (await settled(alice, id)).data!.task;
    expect(done).toMatchObject({ status: 'DONE', source: { width: 100, height: 200 }, result: { width: 25, height: 50 } });
  });

  it('fails a truncated JPEG once, at once, with the reason', async () => {
    const truncated = big.subarray(0, Math.floor(big.byteLength * 0.6));
    const id = await createTask(alice, truncated, { width: 100 }, true);
    const failed = (await settled(alice, id)).data!.task;
    expect(failed).toMatchObject({ status: 'FAILED', attempts: 1, result: null });
    if (failed.__typename !== 'Task') throw new Error('not a task');
    expect(failed.error).toMatch(/cannot process image/);
    expect(failed.events.map((e) => e.status)).toEqual(['CREATED', 'QUEUED', 'RUNNING', 'FAILED']);
  });
});

describe('errors, as typed union members', () => {
  it('WrongTaskIdFormat and TaskDoesNotExist on task, runTask and deleteTask', async () => {
    const missing = '6f1c1b1e-1d1a-4c1b-9a1b-1c1d1e1f1a1b';
    for (const [doc, field] of [
      [GetTask, 'task'],
      [RunTask, 'runTask'],
      [DeleteTask, 'deleteTask'],
    ] as const) {
      const wrong = await alice.request(doc as typeof GetTask, { id: 'not-a-uuid' });
      expect((wrong.data as Record<string, unknown>)[field]).toEqual({
        __typename: 'WrongTaskIdFormat',
        message: '"not-a-uuid" is not a task id (a UUID)',
      });
      const none = await alice.request(doc as typeof GetTask, { id: missing });
      expect((none.data as Record<string, unknown>)[field]).toEqual({
        __typename: 'TaskDoesNotExist',
        message: `task ${missing} does not exist`,
      });
    }
  });

  it('InvalidTaskState when running a task that is not CREATED', async () => {
    const id = await createTask(alice, await photo(64, 64), { width: 8 }, true);
    await settled(alice, id);
    const again = await alice.request(RunTask, { id });
    expect(again.data?.runTask).toEqual({ __typename: 'InvalidTaskState', message: 'cannot run a task that is DONE', status: 'DONE' });
  });

  it.each([
    [{}, 'resize.width', 'give at least one of width and height'],
    [{ width: 0 }, 'resize.width', 'width must be an integer from 1 to 16384, got 0'],
    [{ height: 20000 }, 'resize.height', 'height must be an integer from 1 to 16384, got 20000'],
    [{ width: 10, quality: 500 }, 'resize.quality', 'quality must be an integer from 1 to 100, got 500'],
  ])('InvalidInput for resize %j, naming %s, and nothing is stored', async (resize, field, message) => {
    const before = await infra.sql<{ n: string }>(`SELECT count(*) AS n FROM "Image"`);
    const response = await create(alice, await photo(32, 32), resize);
    expect(response.data?.createTask).toEqual({ __typename: 'InvalidInput', field, message });
    expect(await infra.sql(`SELECT count(*) AS n FROM "Image"`)).toEqual(before);
  });

  it.each([
    ['plain text named .jpg', Buffer.from('definitely not an image')],
    ['an SVG', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>')],
    ['a PDF', Buffer.from('%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF')],
    ['a corrupt PNG header', Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(100, 1)])],
  ])('InvalidImage for %s, and nothing is stored', async (_, bytes) => {
    const before = await infra.sql(`SELECT (SELECT count(*) FROM "Task") AS tasks, (SELECT count(*) FROM "Image") AS images`);
    const blobsBefore = await infra.blobKeys();
    const response = await create(alice, bytes, { width: 10 });
    expect(response.data?.createTask.__typename).toBe('InvalidImage');
    expect((response.data?.createTask as { message: string }).message).toMatch(/not a supported raster image|unreadable/);
    expect(await infra.sql(`SELECT (SELECT count(*) FROM "Task") AS tasks, (SELECT count(*) FROM "Image") AS images`)).toEqual(before);
    expect(await infra.blobKeys()).toEqual(blobsBefore); // a refused image leaves no blob
  });

  it('refuses an unknown jobDefinition by schema validation (a request error: 400 for application/graphql-response+json, 200 for application/json)', async () => {
    const form = new FormData();
    form.append(
      'operations',
      JSON.stringify({
        query: 'mutation($f: File!) { createTask(input: {jobDefinition: IMAGE_ROTATE, image: $f, resize: {width: 1}}) { __typename } }',
        variables: { f: null },
      }),
    );
    form.append('map', JSON.stringify({ 0: ['variables.f'] }));
    form.append('0', new Blob([await photo(8, 8)]), 'a.jpg');
    for (const [accept, status] of [['application/graphql-response+json', 400], ['application/json', 200]] as const) {
      const response = await fetch(`${service.url}/graphql`, { method: 'POST', headers: { authorization: `Bearer ${alice.key}`, accept }, body: form });
      expect(response.status, accept).toBe(status);
      const body = await response.json();
      expect(body.data).toBeUndefined();
      expect(body.errors[0].message).toMatch(/IMAGE_ROTATE/);
    }
  });
});

describe('tenancy', () => {
  it('makes another key\'s task look missing on every surface', async () => {
    const id = await createTask(alice, await photo(64, 64), { width: 16 }, true);
    const done = (await settled(alice, id)).data!.task;
    if (done.__typename !== 'Task') throw new Error('not a task');
    const missing = { __typename: 'TaskDoesNotExist', message: `task ${id} does not exist` };
    expect((await mallory.request(GetTask, { id })).data?.task).toEqual(missing);
    expect((await mallory.request(RunTask, { id })).data?.runTask).toEqual(missing);
    expect((await mallory.request(DeleteTask, { id })).data?.deleteTask).toEqual(missing);
    const list = await mallory.request(ListTasks, { first: 100 });
    expect(list.data?.tasks.edges.map((e) => e.node.id)).not.toContain(id);
    const image = await fetch(`${service.url}/images/${done.result!.id}`, { headers: { authorization: `Bearer ${mallory.key}` } });
    expect(image.status).toBe(404);
    // And it is untouched.
    expect((await alice.request(GetTask, { id })).data?.task).toMatchObject({ status: 'DONE' });
  });
});

describe('concurrency', () => {
  it('three concurrent runTask calls queue the task once and complete it once', async () => {
    const id = await createTask(alice, await photo(300, 200), { width: 30 });
    const results = await Promise.all([1, 2, 3].map(() => alice.request(RunTask, { id })));
    const kinds = results.map((r) => r.data!.runTask.__typename).sort();
    expect(kinds).toEqual(['InvalidTaskState', 'InvalidTaskState', 'Task']);
    const done = (await settled(alice, id)).data!.task;
    if (done.__typename !== 'Task') throw new Error('not a task');
    expect(done.events.map((e) => e.status)).toEqual(['CREATED', 'QUEUED', 'RUNNING', 'DONE']);
    expect(await infra.sql(`SELECT count(*)::int AS n FROM "Image" WHERE "ownerId" = 'alice' AND id = $1`, [done.resultOfJob])).toEqual([{ n: 1 }]);
  });

  it('a delete racing a running job wins for good: images gone, never resurrected', async () => {
    const id = await createTask(alice, big, { width: 2000, format: 'PNG' }, true);
    await until(
      () => alice.request(GetTask, { id }),
      (r) => r.data?.task.__typename === 'Task' && r.data.task.status !== 'QUEUED',
      20_000,
      5,
    );
    const deleted = await alice.request(DeleteTask, { id });
    expect(deleted.data?.deleteTask).toEqual({ __typename: 'Task', id, status: 'DELETED', source: null, result: null, resultOfJob: null });
    // The worker's delivery has ended (its writes refused, its result's blob removed) once no
    // job is active: bee-queue keeps the job active until the worker's handler has returned.
    await until(() => scrape(service.url), (m) => m.has('tasklane_queue_jobs', { state: 'active' }) && m.sum('tasklane_queue_jobs', { state: 'active' }) === 0, 60_000);
    const after = (await alice.request(GetTask, { id })).data!.task;
    if (after.__typename !== 'Task') throw new Error('not a task');
    expect(after.status).toBe('DELETED');
    expect(after.events.at(-1)!.status).toBe('DELETED');
    expect(after.events.filter((e) => e.status === 'DELETED')).toHaveLength(1);
    const images = await infra.sql(`SELECT id FROM "Image" i WHERE NOT EXISTS (
      SELECT 1 FROM "Task" t WHERE t."sourceImageId" = i.id OR t."resultImageId" = i.id)`);
    expect(images).toEqual([]); // no orphaned image, whichever finished first
    expect(await infra.orphanBlobs()).toEqual([]); // nor a blob: the discarded result's was deleted
    // Deleting again is harmless and changes nothing.
    expect((await alice.request(DeleteTask, { id })).data?.deleteTask).toMatchObject({ status: 'DELETED' });
  });

  it('deleting a DONE task removes both images and 404s its URLs', async () => {
    const id = await createTask(alice, await photo(100, 100), { width: 10 }, true);
    const done = (await settled(alice, id)).data!.task;
    if (done.__typename !== 'Task') throw new Error('not a task');
    await alice.request(DeleteTask, { id });
    expect((await fetch(`${service.url}${done.result!.url}`)).status).toBe(404);
    expect((await fetch(`${service.url}${done.source!.url}`)).status).toBe(404);
    const rows = await infra.sql(`SELECT id FROM "Image" WHERE id = ANY($1::uuid[])`, [[done.result!.id, done.source!.id]]);
    expect(rows).toEqual([]);
    const blobs = await infra.blobKeys();
    expect(blobs).not.toContain(`images/${done.result!.id}`);
    expect(blobs).not.toContain(`images/${done.source!.id}`);
  });
});

describe('tasks (the list)', () => {
  it('is newest first, filters by status, pages with after, caps the page size', async () => {
    const lister = client(service.url, await infra.createKey('lister'));
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await createTask(lister, await photo(16, 16), { width: 8 }));
    const page1 = await lister.request(ListTasks, { first: 2 });
    expect(page1.data?.tasks.edges.map((e) => e.node.id)).toEqual([ids[2], ids[1]]);
    expect(page1.data?.tasks.pageInfo.hasNextPage).toBe(true);
    const page2 = await lister.request(ListTasks, { first: 2, after: page1.data!.tasks.pageInfo.endCursor });
    expect(page2.data?.tasks.edges.map((e) => e.node.id)).toEqual([ids[0]]);
    expect(page2.data?.tasks.pageInfo.hasNextPage).toBe(false);
    await lister.request(RunTask, { id: ids[1] });
    const queuedOrLater = await lister.request(ListTasks, { status: ['CREATED'] });
    expect(queuedOrLater.data?.tasks.edges.map((e) => e.node.id)).toEqual([ids[2], ids[0]]);
    const tooMany = await lister.request(ListTasks, { first: 101 });
    expect(tooMany.errors?.[0]).toMatchObject({ message: 'first must be from 0 to 100', extensions: { code: 'BAD_USER_INPUT' } });
  });
});
