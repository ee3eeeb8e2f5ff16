// The blob store failing under a running deployment (`npm start`: API and two workers) with
// tasks running, on each backend:
// - s3: the store cut off by a TCP proxy this test owns (new connections refused, open ones
//   cut, a read or write in flight included), then back;
// - disk: the store's file system remounted read-only, then read-write; then, idle, full.
//   chmod does not stop root, so as root the store is on a tmpfs of its own
//   (helpers/disk-faults.ts); another user gets a read-only directory by chmod instead.
// While the store fails: /ready is 503 naming it, uploads are refused with a typed 503
// (GraphQL STORAGE_UNAVAILABLE, REST StorageUnavailable; a two-step upload's PUT to the API
// likewise, and its createTask when the API cannot read the bytes) and leave no task, row or blob,
// and the jobs that meet the fault are retried without spending an attempt: the deployment
// runs with MAX_ATTEMPTS=2, and the store comes back only once a task met the fault twice,
// so counted retries would have failed it. Once the store is back:
// every task DONE once, every image row's blob whole (size and sha-256), every result
// downloadable byte-identical, uploads accepted again.
//
// Each backend gets its own store here, whatever TEST_STORAGE says.
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobStore, type BlobStore } from '../src/storage/index.ts';
import { client, until, type Client } from './helpers/client.ts';
import { readOnlyMethod, smallDisk, type SmallDisk } from './helpers/disk-faults.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { tcpProxy, type TcpProxy } from './helpers/outage.ts';
import { startS3, type TestS3 } from './helpers/s3rver.ts';
import { startService, type Service } from './helpers/service.ts';
import { expectAllDoneOnce } from './helpers/settled.ts';
import { createTask } from './helpers/tasks.ts';

const CREATE = `mutation ($input: CreateTaskInput!) { createTask(input: $input) { __typename ... on Task { id } } }`;

/** What the deployment says to a GraphQL multipart upload and to a REST one. */
async function uploads(service: Service, key: string, image: Buffer) {
  const form = new FormData();
  form.append('operations', JSON.stringify({ query: CREATE, variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: null, resize: { width: 10 } } } }));
  form.append('map', JSON.stringify({ 0: ['variables.input.image'] }));
  form.append('0', new Blob([image as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' }), 'a.jpg');
  const graphql = await fetch(`${service.url}/graphql`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
  const rest = new FormData();
  rest.append('jobDefinition', 'IMAGE_RESIZE');
  rest.append('width', '10');
  rest.append('image', new Blob([image as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' }), 'a.jpg');
  const response = await fetch(`${service.url}/api/tasks`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: rest });
  return {
    graphql: { status: graphql.status, retryAfter: graphql.headers.get('retry-after'), body: await graphql.json() },
    rest: { status: response.status, retryAfter: response.headers.get('retry-after'), body: await response.json() },
  };
}

const CREATE_UPLOAD = `mutation ($input: CreateUploadInput!) {
  createUpload(input: $input) { __typename ... on PendingUpload { id url method headers { name value } } ... on Error { message } }
}`;

async function graphqlRequest(service: Service, key: string, query: string, variables: Record<string, unknown>) {
  const response = await fetch(`${service.url}/graphql`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, body: await response.json() };
}

/** Step one of a two-step upload (createUpload): touches PostgreSQL only. */
async function createUpload(service: Service, key: string, bytes: Buffer) {
  const { body } = await graphqlRequest(service, key, CREATE_UPLOAD, { input: { contentType: 'image/jpeg', byteSize: bytes.length } });
  const pending = body.data?.createUpload;
  if (pending?.__typename !== 'PendingUpload') throw new Error(`createUpload: ${JSON.stringify(body)}`);
  return pending as { id: string; url: string; method: string; headers: { name: string; value: string }[] };
}

/** Step two: the PUT, to the API (disk) or to the store itself (s3); 'unreachable' when nothing answers. */
async function putUpload(service: Service, pending: Awaited<ReturnType<typeof createUpload>>, bytes: Buffer) {
  try {
    const response = await fetch(new URL(pending.url, service.url), {
      method: pending.method,
      headers: Object.fromEntries(pending.headers.map((h) => [h.name, h.value])),
      body: new Uint8Array(bytes),
    });
    return { status: response.status, retryAfter: response.headers.get('retry-after'), body: await response.text() };
  } catch {
    return 'unreachable' as const;
  }
}

/** Step three: createTask({uploadId}); the task's id, or the error's code and HTTP status. */
async function createFromUpload(service: Service, key: string, uploadId: string) {
  const { status, body } = await graphqlRequest(service, key, CREATE, {
    input: { jobDefinition: 'IMAGE_RESIZE', uploadId, resize: { width: 50 }, run: true },
  });
  const task = body.data?.createTask;
  return task?.__typename === 'Task' ? { id: task.id as string } : { status, code: body.errors?.[0]?.extensions?.code ?? task?.__typename };
}

async function ready(service: Service) {
  const response = await fetch(`${service.url}/ready`);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Everything a refused upload could have left: tasks, source image rows, blobs. */
async function footprint(infra: TestInfra, store: BlobStore) {
  const [counts] = await infra.sql<{ tasks: number; sources: number }>(
    `SELECT (SELECT count(*)::int FROM "Task") AS tasks, (SELECT count(*)::int FROM "Image" WHERE id IN (SELECT "sourceImageId" FROM "Task")) AS sources`,
  );
  const blobs: string[] = [];
  for await (const blob of store.list()) blobs.push(blob.key);
  return { ...counts, blobs: blobs.sort() };
}

/** The store is failing: /ready says so, uploads are refused with a typed 503 and leave nothing. */
async function expectRefusals(infra: TestInfra, service: Service, key: string, store: BlobStore, image: Buffer) {
  const state = await ready(service);
  expect(state.status).toBe(503);
  expect(state.body).toMatchObject({ ready: false, postgres: 'ok', redis: 'ok', storage: expect.stringMatching(/store/) });
  // Nothing can be written to the store now: not even a running job's result.
  const before = await footprint(infra, store);
  const answers = await uploads(service, key, image);
  expect(answers.graphql).toMatchObject({ status: 503, retryAfter: '5' });
  expect(answers.graphql.body.errors?.[0]?.extensions?.code).toBe('STORAGE_UNAVAILABLE');
  expect(answers.graphql.body.data?.createTask ?? null).toBeNull();
  expect(answers.rest).toMatchObject({ status: 503, retryAfter: '5', body: { error: 'StorageUnavailable' } });
  const after = await footprint(infra, store);
  expect(after).toEqual(before);
}

/** Blobs no image row points at. */
async function orphanBlobs(infra: TestInfra, store: BlobStore): Promise<string[]> {
  const rows = await infra.sql<{ storageKey: string }>(`SELECT "storageKey" FROM "Image" WHERE "expiredAt" IS NULL`);
  const referenced = new Set(rows.map((row) => row.storageKey));
  const orphans: string[] = [];
  for await (const blob of store.list()) if (!referenced.has(blob.key)) orphans.push(blob.key);
  return orphans;
}

/** Every image row's blob is in the store, whole: its size and sha-256 are the row's. */
async function expectImagesWhole(infra: TestInfra, store: BlobStore) {
  const rows = await infra.sql<{ storageKey: string; byteSize: number; sha256: string }>(
    `SELECT "storageKey", "byteSize", "sha256" FROM "Image" WHERE "expiredAt" IS NULL`,
  );
  expect(rows.length).toBeGreaterThan(0);
  for (const row of rows) {
    const bytes = await buffer((await store.open(row.storageKey)).stream);
    expect({ key: row.storageKey, byteSize: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') }).toEqual({
      key: row.storageKey,
      byteSize: row.byteSize,
      sha256: row.sha256,
    });
  }
}

interface Setup {
  /** The deployment's STORAGE_URL and friends. */
  env: Record<string, string>;
  /** The same store, reached directly (not through the fault). */
  store: BlobStore;
  cut(): Promise<void>;
  restore(): Promise<void>;
  /** During the cut, may a source still be downloaded? (a read-only disk: yes; an unreachable store: no) */
  readableWhileCut: boolean;
  /**
   * May blobs without a row remain? On s3, a result the store took whose answer the cut lost
   * cannot be deleted while the store is unreachable: it waits for the orphan sweep
   * (ORPHAN_GRACE_MS, test/retention.test.ts). A disk write fails before its rename, leaving nothing.
   */
  orphansPossible: boolean;
}

/**
 * Tasks running and queued when the store fails; checks everything the header promises.
 * Resolves with the service, the key and an image for more.
 */
function outageWhileRunning(setupStore: (infra: TestInfra) => Promise<Setup & { close(): Promise<void> }>) {
  const env = {} as { infra: TestInfra; setup: Setup & { close(): Promise<void> }; service: Service; key: string; alice: Client; image: Buffer; cut: boolean };

  beforeAll(async () => {
    env.infra = await createInfra('storeoutage');
    env.setup = await setupStore(env.infra);
    [env.service, env.image] = await Promise.all([
      startService(env.infra, { ...env.setup.env, WORKERS: '2', MAX_ATTEMPTS: '2', STORAGE_TIMEOUT_MS: '2000' }),
      photo(320, 240),
    ]);
    env.key = await env.infra.createKey('alice');
    env.alice = client(env.service.url, env.key);
  });

  afterAll(async () => {
    if (process.env.DEBUG_OUTAGE) await fs.writeFile(`/tmp/outage-${env.setup?.readableWhileCut}.log`, env.service?.output() ?? '');
    if (env.cut) await env.setup.restore().catch(() => {});
    await env.service?.stop();
    await env.setup?.close();
    await env.infra?.dispose();
  });

  it('while tasks run: /ready 503, uploads refused with a typed 503, jobs retried uncounted; after: all DONE once, every blob whole', async () => {
    const { infra, setup, service, key, alice, image } = env;
    expect((await ready(service)).status).toBe(200);
    // Work that takes a while (AVIF, a second or two) first, one task per worker, so that the
    // fault finds jobs running and others queued. No more tasks than that: each delivery the
    // fault meets grows its worker's backoff (doubling, up to 30 s), and every task must be due
    // again before the end; on a read-only disk, each one encodes in full before its write fails.
    const [big, square] = await Promise.all([photo(1600, 1200), photo(1024, 1024)]);
    const resizes = [
      { bytes: square, resize: { width: 512, format: 'AVIF' } },
      { bytes: square, resize: { width: 384, format: 'AVIF' } },
      { bytes: big, resize: { width: 800, format: 'WEBP' } },
      { bytes: big, resize: { width: 320 } },
    ];
    const ids: string[] = [];
    for (const { bytes, resize } of resizes) ids.push(await createTask(alice, bytes, resize, true));
    // A two-step upload whose bytes are in before the fault, to be used during it.
    const uploaded = await createUpload(service, key, image);
    expect(await putUpload(service, uploaded, image)).toMatchObject({ status: expect.toSatisfy((status: number) => status < 300) });
    await until(() => infra.sql(`SELECT count(*)::int AS n FROM "Task" WHERE status = 'RUNNING'`), ([row]) => (row.n as number) > 0, 120_000, 20);

    env.cut = true;
    await setup.cut();
    await expectRefusals(infra, service, key, setup.store, image);
    // Two-step uploads: recording one needs no store; its PUT is refused (disk: by the API,
    // typed) or finds nothing (s3: the store itself is unreachable), leaving nothing.
    const during = await createUpload(service, key, image);
    const put = await putUpload(service, during, image);
    if (setup.env.STORAGE_URL.startsWith('file:')) {
      expect(put).toMatchObject({ status: 503, retryAfter: '5' });
      expect(JSON.parse((put as { body: string }).body)).toMatchObject({ error: 'StorageUnavailable' });
    } else expect(put).toBe('unreachable');
    // A task from the upload PUT before: the API must read it (its size, type, header); where
    // it cannot (s3 unreachable), 503 and the upload stays usable; a read-only disk can be read.
    const fromUpload = await createFromUpload(service, key, uploaded.id);
    if (setup.readableWhileCut) {
      expect(fromUpload).toEqual({ id: expect.any(String) });
      ids.push((fromUpload as { id: string }).id);
    } else expect(fromUpload).toEqual({ status: 503, code: 'STORAGE_UNAVAILABLE' });
    const [source] = await infra.sql<{ id: string }>(`SELECT "sourceImageId" AS id FROM "Task" WHERE id = $1`, [ids[0]]);
    const download = await fetch(`${service.url}/images/${source.id}`, { headers: { authorization: `Bearer ${key}` } });
    if (setup.readableWhileCut) expect(download.status).toBe(200);
    else expect({ status: download.status, retryAfter: download.headers.get('retry-after') }).toEqual({ status: 503, retryAfter: '5' });
    await download.arrayBuffer();

    // Jobs meet the fault and go back to the queue without spending an attempt: wait for a task
    // that met it MAX_ATTEMPTS (2) times, so that counting would have failed it.
    const waited = await until(
      () =>
        infra.sql<{ taskId: string; times: number }>(
          `SELECT "taskId", count(*)::int AS times FROM "TaskEvent" WHERE message LIKE 'retrying after:%the blob store is down%' GROUP BY "taskId"`,
        ),
      (rows) => rows.some((row) => row.times >= 2),
      180_000,
      200,
    );
    expect(await infra.sql(`SELECT id, error FROM "Task" WHERE status = 'FAILED'`)).toEqual([]);
    // Still failing (nothing flapped back to healthy meanwhile).
    expect((await ready(service)).status).toBe(503);

    await setup.restore();
    env.cut = false;
    await until(() => ready(service), (state) => state.status === 200, 60_000, 200);
    // Waiting tasks are due again within the backoff's cap (30 s).
    const audit = await expectAllDoneOnce((text, params) => infra.sql(text, params), ids, 240_000);
    // A delivery that fails in the instant the store comes back is counted (the check after it
    // passes): one attempt at most, which MAX_ATTEMPTS=2 leaves room for.
    for (const { taskId } of waited) expect(audit.facts.get(taskId)!.attempts).toBeLessThanOrEqual(2);
    await expectImagesWhole(infra, setup.store);
    if (!setup.orphansPossible) expect(await orphanBlobs(infra, setup.store)).toEqual([]);
    const results = await infra.sql<{ id: string; sha256: string }>(
      `SELECT i.id, i.sha256 FROM "Task" t JOIN "Image" i ON i.id = t."resultImageId" WHERE t.id = ANY($1::uuid[])`,
      [ids],
    );
    expect(results).toHaveLength(ids.length);
    for (const result of results) {
      const response = await fetch(`${service.url}/images/${result.id}`, { headers: { authorization: `Bearer ${key}` } });
      expect(response.status).toBe(200);
      expect(createHash('sha256').update(Buffer.from(await response.arrayBuffer())).digest('hex')).toBe(result.sha256);
    }
    // Uploads are accepted again, two-step ones included (the upload refused during the fault is usable).
    const answers = await uploads(service, key, image);
    expect(answers.rest.status).toBe(201);
    expect(answers.graphql.body.data?.createTask?.__typename).toBe('Task');
    expect(await putUpload(service, during, image)).toMatchObject({ status: expect.toSatisfy((status: number) => status < 300) });
    const later = [await createFromUpload(service, key, during.id)];
    if (!setup.readableWhileCut) later.push(await createFromUpload(service, key, uploaded.id));
    for (const created of later) expect(created).toEqual({ id: expect.any(String) });
    await expectAllDoneOnce((text, params) => infra.sql(text, params), later.map((created) => (created as { id: string }).id), 120_000);
  }, 600_000);

  return env;
}

describe('s3 store cut off by a proxy', () => {
  let s3: TestS3;
  let proxy: TcpProxy;
  outageWhileRunning(async () => {
    s3 = await startS3({ bucket: 'tasklane-outage' });
    proxy = await tcpProxy(s3.port);
    return {
      env: { ...s3.env, S3_ENDPOINT: `http://127.0.0.1:${proxy.port}` },
      store: createBlobStore(s3.storage, { credentials: s3.credentials }),
      cut: () => proxy.down(),
      restore: () => proxy.up(),
      readableWhileCut: false,
      orphansPossible: true,
      close: async () => {
        await proxy.close();
        await s3.close();
      },
    };
  });
});

describe.skipIf(readOnlyMethod === null)(`disk store not writable (${readOnlyMethod ?? 'root without mount: skipped'})`, () => {
  let disk: SmallDisk | null = null;
  let root: string;
  const env = outageWhileRunning(async () => {
    if (readOnlyMethod === 'remount') {
      disk = await smallDisk(128 * 1024 * 1024);
      root = path.join(disk.dir, 'blobs');
    } else {
      root = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'tasklane-ro-')), 'blobs');
    }
    await fs.mkdir(path.join(root, '.tmp'), { recursive: true });
    // A non-root user: the directory the store writes every blob into first, read-only.
    const chmod = (mode: number) => fs.chmod(path.join(root, '.tmp'), mode);
    return {
      env: { STORAGE_URL: `file:${root}` },
      store: createBlobStore({ kind: 'disk', root }),
      cut: () => (disk ? disk.readOnly() : chmod(0o555)),
      restore: () => (disk ? disk.readWrite() : chmod(0o755)),
      readableWhileCut: true,
      orphansPossible: false,
      close: async () => {
        if (disk) await disk.close();
        else await fs.rm(path.dirname(root), { recursive: true, force: true });
      },
    };
  });

  it.skipIf(readOnlyMethod !== 'remount')('full (idle): /ready 503, uploads (multipart and PUT) refused with a typed 503 leaving no partial file; space back: accepted and run', async () => {
    const { infra, service, key, alice, image } = env;
    const store = createBlobStore({ kind: 'disk', root });
    await disk!.fill();
    try {
      await expectRefusals(infra, service, key, store, image);
      const put = await putUpload(service, await createUpload(service, key, image), image);
      expect(put).toMatchObject({ status: 503, retryAfter: '5' });
      expect(JSON.parse((put as { body: string }).body)).toMatchObject({ error: 'StorageUnavailable' });
      expect(await fs.readdir(path.join(root, '.tmp'))).toEqual([]);
      expect((await ready(service)).status).toBe(503);
    } finally {
      await disk!.free();
    }
    await until(() => ready(service), (state) => state.status === 200, 60_000, 200);
    const id = await createTask(alice, image, { width: 100 }, true);
    await expectAllDoneOnce((text, params) => infra.sql(text, params), [id], 120_000);
    await expectImagesWhole(infra, store);
    expect(await orphanBlobs(infra, store)).toEqual([]);
  }, 300_000);
});
