// A service on its own S3 store (s3rver):
// - IMAGE_DOWNLOADS=redirect: /images/<id> answers 302 to a presigned store URL.
// - The store unreachable (the server stopped, then started again): /ready says so, uploads
//   are refused with STORAGE_UNAVAILABLE (GraphQL) and 503 StorageUnavailable (REST) and
//   leave nothing behind, a job is retried as transient and finishes once the store is
//   back, and deleteTask still succeeds (its blobs wait for a sweep).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphql } from './gql/index.ts';
import { client, until, type Client } from './helpers/client.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { startS3, type TestS3 } from './helpers/s3rver.ts';
import { SCRIPTS, startService, type Service } from './helpers/service.ts';
import { createTask } from './helpers/tasks.ts';

const FaultCreate = graphql(`
  mutation FaultCreate($input: CreateTaskInput!) {
    createTask(input: $input) { __typename ... on Task { id } }
  }
`);
const FaultRun = graphql(`
  mutation FaultRun($id: ID!) {
    runTask(id: $id) { __typename ... on Task { id status } }
  }
`);
const FaultDelete = graphql(`
  mutation FaultDelete($id: ID!) {
    deleteTask(id: $id) { __typename ... on Task { id status } }
  }
`);
const FaultTask = graphql(`
  query FaultTask($id: ID!) {
    task(id: $id) { __typename ... on Task { id status attempts error events { status message } result { id url } } }
  }
`);

let infra: TestInfra;
let s3: TestS3;
let service: Service;
let alice: Client;
let key: string;
let image: Buffer;

beforeAll(async () => {
  infra = await createInfra('storefaults');
  s3 = await startS3({ bucket: 'tasklane-faults' });
  [service, image] = await Promise.all([
    startService(infra, { ...s3.env, WORKERS: '1', STORAGE_TIMEOUT_MS: '1000' }),
    photo(200, 150),
  ]);
  key = await infra.createKey('alice');
  alice = client(service.url, key);
});

afterAll(async () => {
  await service?.stop();
  await s3?.close();
  await infra?.dispose();
});

const task = async (id: string) => {
  const found = (await alice.request(FaultTask, { id })).data?.task;
  if (found?.__typename !== 'Task') throw new Error(`no task ${id}`);
  return found;
};

describe('IMAGE_DOWNLOADS=redirect', () => {
  it('sends /images/<id> to a presigned store URL that serves the bytes with their content type', async () => {
    const redirecting = await startService(infra, { ...s3.env, IMAGE_DOWNLOADS: 'redirect' }, SCRIPTS.api);
    try {
      const id = await createTask(alice, await photo(64, 48, 'png'), { width: 32 }, true);
      const done = await until(() => task(id), (t) => t.status === 'DONE' || t.status === 'FAILED', 60_000);
      expect(done.status).toBe('DONE');
      const proxied = await fetch(`${service.url}${done.result!.url}`);
      const bytes = Buffer.from(await proxied.arrayBuffer());
      const redirect = await fetch(`${redirecting.url}${done.result!.url}`, { redirect: 'manual' });
      expect(redirect.status).toBe(302);
      const location = redirect.headers.get('location')!;
      expect(location.startsWith(s3.endpoint)).toBe(true);
      const fromStore = await fetch(location);
      expect(fromStore.status).toBe(200);
      expect(fromStore.headers.get('content-type')).toBe('image/png');
      expect(Buffer.from(await fromStore.arrayBuffer()).equals(bytes)).toBe(true);
      // The signature and owner checks come first, as with proxying.
      expect((await fetch(`${redirecting.url}/images/${done.result!.id}`, { redirect: 'manual' })).status).toBe(401);
    } finally {
      await redirecting.stop();
    }
  });
});

describe('the blob store unreachable', () => {
  it('is reported by /ready, refuses uploads with a typed 503, retries jobs, and never fails a delete', async () => {
    expect((await fetch(`${service.url}/ready`)).status).toBe(200);
    const waiting = await createTask(alice, image, { width: 50 });
    const deletable = await createTask(alice, image, { width: 50 });
    const rowsBefore = await infra.sql(`SELECT count(*)::int AS n FROM "Image"`);

    await s3.stop();
    const ready = await fetch(`${service.url}/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ ready: false, postgres: 'ok', redis: 'ok', storage: expect.not.stringMatching(/^ok$/) });

    const graphqlUpload = await alice.upload(
      FaultCreate,
      { input: { jobDefinition: 'IMAGE_RESIZE', image: null as unknown as File, resize: { width: 10 } } },
      { path: 'variables.input.image', bytes: image, name: 'a.jpg', type: 'image/jpeg' },
    );
    expect(graphqlUpload.status).toBe(503);
    expect(graphqlUpload.errors?.[0].extensions?.code).toBe('STORAGE_UNAVAILABLE');

    const form = new FormData();
    form.append('jobDefinition', 'IMAGE_RESIZE');
    form.append('width', '10');
    form.append('image', new Blob([image as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' }), 'a.jpg');
    const rest = await fetch(`${service.url}/api/tasks`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
    expect(rest.status).toBe(503);
    expect(await rest.json()).toMatchObject({ error: 'StorageUnavailable' });
    expect(await infra.sql(`SELECT count(*)::int AS n FROM "Image"`)).toEqual(rowsBefore);

    // A delete commits and answers; the blobs it could not remove are left for a sweep.
    expect((await alice.request(FaultDelete, { id: deletable })).data?.deleteTask).toMatchObject({ status: 'DELETED' });

    // A job cannot read its source: transient, so retried rather than FAILED.
    expect((await alice.request(FaultRun, { id: waiting })).data?.runTask).toMatchObject({ status: 'QUEUED' });
    const retried = await until(
      () => task(waiting),
      (t) => t.events.some((e) => e.message?.startsWith('retrying after')),
      30_000,
    );
    expect(retried.status).not.toBe('FAILED');

    await s3.start();
    const done = await until(
      () => task(waiting),
      (t) => t.status === 'DONE' || t.status === 'FAILED',
      60_000,
    );
    expect(done).toMatchObject({ status: 'DONE', error: null });
    expect((await fetch(`${service.url}/ready`)).status).toBe(200);
    // Uploads work again.
    await createTask(alice, image, { width: 20 });
  });
});
