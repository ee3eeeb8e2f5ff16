// Idempotent createTask through GraphQL against two real API processes sharing one database,
// Redis and blob store: the same key answers with the same task and stores nothing again;
// a different request under it is IdempotencyKeyReused; keys are per API key and expire
// after 24 h; concurrent duplicates sent to both processes at once make exactly one task and
// leave exactly one blob. (REST's Idempotency-Key is tested in rest.e2e.test.ts.)
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphql } from './gql/index.ts';
import { client, until, type Client } from './helpers/client.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { SCRIPTS, startProcess, startService, testEnv, type RunningProcess, type Service } from './helpers/service.ts';

const CreateKeyed = graphql(`
  mutation CreateKeyed($input: CreateTaskInput!) {
    createTask(input: $input) {
      __typename
      ... on Task { id status }
      ... on Error { message }
      ... on InvalidInput { field }
      ... on IdempotencyKeyReused { taskId }
    }
  }
`);

const CreateUploadKeyed = graphql(`
  mutation CreateUploadKeyed($input: CreateUploadInput!) {
    createUpload(input: $input) {
      __typename
      ... on PendingUpload { id url method headers { name value } }
      ... on Error { message }
    }
  }
`);

const DeleteKeyed = graphql(`
  mutation DeleteKeyed($id: ID!) {
    deleteTask(id: $id) { __typename }
  }
`);

let infra: TestInfra;
let apis: Service[];
let jpeg: Buffer;
let otherJpeg: Buffer;

beforeAll(async () => {
  infra = await createInfra('idempotency');
  // The first applies the migrations; the second starts on the migrated database.
  const first = await startService(infra, {}, SCRIPTS.api);
  apis = [first];
  [apis[1], jpeg, otherJpeg] = await Promise.all([startService(infra, {}, SCRIPTS.api), photo(1600, 1200), photo(1600, 1200)]);
}, 180_000);

afterAll(async () => {
  await Promise.all((apis ?? []).map((api) => api?.stop()));
  await infra?.dispose();
});

/** A new API key of the tenant `owner` (each test has its own, so counts are its own). */
function tenant(owner: string): Promise<string> {
  return infra.createKey(owner);
}

interface Request {
  key?: string | null;
  bytes?: Uint8Array;
  resize?: Record<string, unknown>;
  run?: boolean;
}

function create(c: Client, { key, bytes = jpeg, resize = { width: 100 }, run = false }: Request) {
  return c.upload(
    CreateKeyed,
    { input: { jobDefinition: 'IMAGE_RESIZE', image: null as unknown as File, resize, run, ...(key === undefined ? {} : { idempotencyKey: key }) } },
    { path: 'variables.input.image', bytes, name: 'photo.jpg', type: 'image/jpeg' },
  );
}

/** What this owner has in PostgreSQL and what the store holds (every owner's blobs). */
async function stored(owner: string) {
  const [row] = await infra.sql<{ tasks: number; images: number; keys: number }>(
    `SELECT (SELECT count(*)::int FROM "Task" WHERE "ownerId" = $1) AS tasks,
            (SELECT count(*)::int FROM "Image" WHERE "ownerId" = $1) AS images,
            (SELECT count(*)::int FROM "IdempotencyKey" WHERE "ownerId" = $1) AS keys`,
    [owner],
  );
  return { ...row, blobs: (await infra.blobKeys()).length };
}

/** Requests so far that stored their bytes, then found the key taken at the insert (the API processes log each). */
const raced = () => apis.reduce((n, api) => n + (api.output().match(/idempotency key taken by a concurrent request/g)?.length ?? 0), 0);

describe('createTask with an idempotency key', () => {
  it('answers a repeated request with the same task, from either API process, storing nothing again', async () => {
    const key = await tenant('alice');
    const [a, b] = apis.map((api) => client(api.url, key));
    const before = await stored('alice');
    const first = await create(a, { key: 'order-1' });
    expect(first.data?.createTask).toMatchObject({ __typename: 'Task', status: 'CREATED' });
    const id = (first.data!.createTask as { id: string }).id;
    const afterFirst = await stored('alice');
    expect(afterFirst).toEqual({ tasks: before.tasks + 1, images: before.images + 1, keys: before.keys + 1, blobs: before.blobs + 1 });

    // The same request again, on the same and on the other process; the default `fit`
    // spelled out is the same request.
    for (const [c, resize] of [[a, { width: 100 }], [b, { width: 100 }], [b, { width: 100, fit: 'COVER', withoutEnlargement: false }]] as const) {
      const again = await create(c, { key: 'order-1', resize });
      expect(again.data).toEqual({ createTask: { __typename: 'Task', id, status: 'CREATED' } });
    }
    expect(await stored('alice')).toEqual(afterFirst);

    // Without a key, the same request is a new task, as before.
    const unkeyed = await create(a, {});
    expect((unkeyed.data?.createTask as { id: string }).id).not.toBe(id);
  });

  it('refuses a different request under a used key with IdempotencyKeyReused, naming the task, storing nothing', async () => {
    const key = await tenant('bruno');
    const c = client(apis[0].url, key);
    const first = await create(c, { key: 'k' });
    const id = (first.data!.createTask as { id: string }).id;
    const before = await stored('bruno');
    const different: Request[] = [
      { key: 'k', resize: { width: 101 } },
      { key: 'k', resize: { width: 100, format: 'WEBP' } },
      { key: 'k', bytes: otherJpeg },
      { key: 'k', run: true },
    ];
    for (const request of different) {
      const reply = await create(c, request);
      expect(reply.data, JSON.stringify(request.resize ?? request.run)).toEqual({
        createTask: {
          __typename: 'IdempotencyKeyReused',
          taskId: id,
          message: `this idempotency key was used for a different request within the last 24 hours (task ${id}); send a new key with a new request`,
        },
      });
    }
    expect(await stored('bruno')).toEqual(before);
  });

  it('scopes keys per API key name: the same key of two tenants makes two tasks', async () => {
    const [c1, c2] = [client(apis[0].url, await tenant('carmen')), client(apis[1].url, await tenant('dmitri'))];
    const [r1, r2] = [await create(c1, { key: 'shared' }), await create(c2, { key: 'shared' })];
    expect(r1.data?.createTask.__typename).toBe('Task');
    expect(r2.data?.createTask.__typename).toBe('Task');
    expect((r1.data!.createTask as { id: string }).id).not.toBe((r2.data!.createTask as { id: string }).id);
    // And a second key of the same name shares the first one's keys (a tenant is its name).
    const c3 = client(apis[1].url, await infra.createKey('carmen'));
    expect((await create(c3, { key: 'shared' })).data).toEqual({
      createTask: { __typename: 'Task', id: (r1.data!.createTask as { id: string }).id, status: 'CREATED' },
    });
  });

  it('refuses a key that is empty, over 255 characters or has control characters (InvalidInput, field idempotencyKey)', async () => {
    const c = client(apis[0].url, await tenant('elena'));
    const before = await stored('elena');
    for (const [key, message] of [
      ['', 'idempotencyKey must be 1 to 255 characters long, got 0'],
      ['x'.repeat(256), 'idempotencyKey must be 1 to 255 characters long, got 256'],
      ['é'.repeat(256), 'idempotencyKey must be 1 to 255 characters long, got 256'],
      ['line\nbreak', 'idempotencyKey must not contain control characters'],
    ]) {
      const reply = await create(c, { key });
      expect(reply.data).toEqual({ createTask: { __typename: 'InvalidInput', field: 'idempotencyKey', message } });
    }
    expect(await stored('elena')).toEqual(before);
    // 255 characters (of any script) is fine, and is a key like any other.
    for (const key of ['x'.repeat(255), '鍵'.repeat(255), '😀'.repeat(255)]) {
      const first = await create(c, { key });
      expect(first.data?.createTask.__typename, key).toBe('Task');
      expect((await create(c, { key })).data).toEqual(first.data);
    }
  });

  it('remembers only a created task: a refused request can be corrected and sent again with its key', async () => {
    const c = client(apis[0].url, await tenant('farid'));
    const refused = await create(c, { key: 'retry-me', resize: { width: 0 } });
    expect(refused.data?.createTask).toMatchObject({ __typename: 'InvalidInput', field: 'resize.width' });
    const broken = await create(c, { key: 'retry-me', bytes: jpeg.subarray(0, 10) });
    expect(broken.data?.createTask.__typename).toBe('InvalidImage');
    const created = await create(c, { key: 'retry-me' });
    expect(created.data?.createTask.__typename).toBe('Task');
    expect(await stored('farid')).toMatchObject({ tasks: 1, images: 1, keys: 1 });
  });

  it('20 concurrent duplicates across two API processes: exactly one task, every answer names it, one blob', async () => {
    const key = await tenant('gwen');
    const clients = apis.map((api) => client(api.url, key));
    const before = await stored('gwen');
    const racedBefore = raced();
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => create(clients[i % 2], { key: 'burst', run: true })));
    const answers = replies.map((reply) => reply.data?.createTask);
    expect(answers.every((answer) => answer?.__typename === 'Task'), JSON.stringify(answers)).toBe(true);
    const ids = new Set(answers.map((answer) => (answer as { id: string }).id));
    expect(ids.size).toBe(1);
    const [id] = ids;
    expect(await stored('gwen')).toEqual({ tasks: before.tasks + 1, images: before.images + 1, keys: before.keys + 1, blobs: before.blobs + 1 });
    expect(await infra.sql(`SELECT "id" FROM "Task" WHERE "ownerId" = 'gwen'`)).toEqual([{ id }]);
    // Run once: one CREATED and one QUEUED event, whoever answered.
    expect(await infra.sql(`SELECT "status"::text FROM "TaskEvent" WHERE "taskId" = $1 ORDER BY "id"`, [id])).toEqual([
      { status: 'CREATED' },
      { status: 'QUEUED' },
    ]);
    expect(await infra.orphanBlobs()).toEqual([]);
    // How many stored their bytes before losing the race at the insert (their blobs were
    // deleted, as checked above): a duplicate waits for the first of its API process, so at
    // most one per process, here two processes.
    const lost = raced() - racedBefore;
    expect(lost).toBeLessThanOrEqual(apis.length - 1);
    console.log(`MEASURED ${lost} of 20 concurrent duplicates stored their bytes and lost the race at the insert`);
  }, 120_000);

  it('20 concurrent duplicates of a two-step upload (one uploadId) across two API processes: one task, every answer names it', async () => {
    const key = await tenant('ines');
    const clients = apis.map((api) => client(api.url, key));
    const pending = (await clients[0].request(CreateUploadKeyed, { input: { contentType: 'image/jpeg', byteSize: jpeg.byteLength } })).data!.createUpload;
    if (pending.__typename !== 'PendingUpload') throw new Error(JSON.stringify(pending));
    const url = pending.url.startsWith('/') ? `${apis[0].url}${pending.url}` : pending.url;
    const put = await fetch(url, { method: pending.method, headers: Object.fromEntries(pending.headers.map((h) => [h.name, h.value])), body: new Uint8Array(jpeg) });
    expect(put.ok, await put.text()).toBe(true);
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        clients[i % 2].request(CreateKeyed, { input: { jobDefinition: 'IMAGE_RESIZE', uploadId: pending.id, resize: { width: 100 }, idempotencyKey: 'two-step' } }),
      ),
    );
    const answers = replies.map((reply) => reply.data?.createTask);
    expect(answers.every((answer) => answer?.__typename === 'Task'), JSON.stringify(answers)).toBe(true);
    expect(new Set(answers.map((answer) => (answer as { id: string }).id)).size).toBe(1);
    expect(await infra.sql(`SELECT count(*)::int AS n FROM "Task" WHERE "ownerId" = 'ines'`)).toEqual([{ n: 1 }]);
  }, 120_000);

  it('concurrent different requests under one key: one task; the same request gets it, the other IdempotencyKeyReused', async () => {
    const key = await tenant('hana');
    const clients = apis.map((api) => client(api.url, key));
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => create(clients[i % 2], { key: 'mixed', resize: { width: i < 10 ? 100 : 200 } })),
    );
    const answers = replies.map((reply) => reply.data?.createTask as { __typename: string; id?: string; taskId?: string });
    const [task] = await infra.sql<{ id: string; width: number }>(`SELECT "id", ("params"->>'width')::int AS "width" FROM "Task" WHERE "ownerId" = 'hana'`);
    expect(await stored('hana')).toMatchObject({ tasks: 1, images: 1, keys: 1 });
    answers.forEach((answer, i) => {
      const sameAsWinner = (i < 10 ? 100 : 200) === task.width;
      expect(answer).toEqual(sameAsWinner ? { __typename: 'Task', id: task.id, status: 'CREATED' } : expect.objectContaining({ __typename: 'IdempotencyKeyReused', taskId: task.id }));
    });
    expect(await infra.orphanBlobs()).toEqual([]);
  }, 120_000);

  describe('after 24 hours', () => {
    let worker: RunningProcess | undefined;
    afterAll(async () => {
      await worker?.stop();
    });

    it('a key makes a new task, and the reconciler removes expired keys', async () => {
      const c = client(apis[0].url, await tenant('ivan'));
      const first = (await create(c, { key: 'daily' })).data!.createTask as { id: string };
      const other = (await create(c, { key: 'other' })).data!.createTask as { id: string };
      // 24 h later, as PostgreSQL sees it.
      await infra.sql(`UPDATE "IdempotencyKey" SET "createdAt" = now() - interval '24 hours 1 second' WHERE "ownerId" = 'ivan'`);
      const again = await create(c, { key: 'daily', resize: { width: 300 } }); // a different request: the key is free again
      expect(again.data?.createTask).toMatchObject({ __typename: 'Task', status: 'CREATED' });
      expect((again.data!.createTask as { id: string }).id).not.toBe(first.id);
      expect(await infra.sql(`SELECT "key", "taskId" FROM "IdempotencyKey" WHERE "ownerId" = 'ivan' ORDER BY "key"`)).toEqual([
        { key: 'daily', taskId: (again.data!.createTask as { id: string }).id },
        { key: 'other', taskId: other.id },
      ]);
      // A worker's reconciler sweeps the expired one; the live one stays.
      worker = startProcess(SCRIPTS.worker, testEnv(infra, { RECONCILE_INTERVAL_MS: '200' }));
      await until(
        () => infra.sql(`SELECT "key" FROM "IdempotencyKey" WHERE "ownerId" = 'ivan' ORDER BY "key"`),
        (rows) => rows.length === 1,
        60_000,
      );
      expect(await infra.sql(`SELECT "key" FROM "IdempotencyKey" WHERE "ownerId" = 'ivan'`)).toEqual([{ key: 'daily' }]);
      // The task the expired key made is still there; only the key went.
      expect(await infra.sql(`SELECT count(*)::int AS n FROM "Task" WHERE "id" = $1`, [other.id])).toEqual([{ n: 1 }]);
    }, 120_000);
  });

  it('answers with the task as it is now, also once it is deleted', async () => {
    const c = client(apis[1].url, await tenant('jun'));
    const key = randomUUID();
    const { id } = (await create(c, { key })).data!.createTask as { id: string };
    expect((await c.request(DeleteKeyed, { id })).data?.deleteTask.__typename).toBe('Task');
    expect((await create(c, { key })).data).toEqual({ createTask: { __typename: 'Task', id, status: 'DELETED' } });
    expect(await stored('jun')).toMatchObject({ tasks: 1, images: 0, keys: 1 });
  });
});
