// A client without multipart, end to end against a real `npm start`: Apollo Client with its
// standard HttpLink (no upload package) and GraphQLWsLink. createUpload → PUT the bytes with
// fetch → createTask({uploadId, run: true}) → taskUpdated to DONE → download the result.
// On both blob stores: the PUT goes to the API (disk) or straight to the store (s3).
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { print } from 'graphql';
import { createClient as createWsClient } from 'graphql-ws';
import sharp from 'sharp';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphql } from './gql/index.ts';
import { until } from './helpers/client.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { within } from './helpers/live.ts';
import { startService, type Service } from './helpers/service.ts';

const CreateUpload = graphql(`
  mutation ApolloCreateUpload($input: CreateUploadInput!) {
    createUpload(input: $input) {
      __typename
      ... on PendingUpload { id url method headers { name value } maxBytes expiresAt }
      ... on Error { message }
    }
  }
`);

const CreateTaskFromUpload = graphql(`
  mutation ApolloCreateTaskFromUpload($input: CreateTaskInput!) {
    createTask(input: $input) {
      __typename
      ... on Task { id status source { byteSize width height url } }
      ... on Error { message }
    }
  }
`);

const WatchUploadedTask = graphql(`
  subscription ApolloWatchUploadedTask($id: ID!) {
    taskUpdated(id: $id) { id status version result { format width height url } }
  }
`);

let infra: TestInfra;
let service: Service;
let key: string;
let bytes: Buffer;

beforeAll(async () => {
  infra = await createInfra('uploads_e2e');
  [service, bytes] = await Promise.all([startService(infra, { WORKERS: '1' }), photo(1600, 1200)]);
  key = await infra.createKey('apollo');
});

afterAll(async () => {
  await service?.stop();
  await infra?.dispose();
});

describe('an upload without multipart', () => {
  it('Apollo Client (HttpLink + GraphQLWsLink): createUpload, PUT with fetch, createTask({uploadId, run}), watch to DONE, download', async () => {
    const wsLink = new GraphQLWsLink(
      createWsClient({ url: `${service.url.replace(/^http/, 'ws')}/graphql`, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${key}` } }),
    );
    const apollo = new ApolloClient({
      cache: new InMemoryCache({ possibleTypes: { Error: ['InvalidInput', 'InvalidImage', 'TooManyTasks'] } }),
      link: ApolloLink.split(
        ({ query }) => {
          const definition = getMainDefinition(query);
          return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
        },
        wsLink,
        new HttpLink({ uri: `${service.url}/graphql`, headers: { authorization: `Bearer ${key}` } }),
      ),
    });
    try {
      const created = await apollo.mutate({ mutation: CreateUpload, variables: { input: { contentType: 'image/jpeg', byteSize: bytes.length } } });
      const upload = created.data!.createUpload;
      if (upload.__typename !== 'PendingUpload') throw new Error(`createUpload: ${JSON.stringify(upload)}`);
      expect(upload).toMatchObject({ method: 'PUT', maxBytes: bytes.length });

      // Step two: the bytes, as any HTTP client sends them. The url is a path on the API
      // (disk) or the store's own (s3): resolved against the API's URL it works for both.
      const target = new URL(upload.url, service.url);
      expect(target.origin === new URL(service.url).origin).toBe(infra.storageKind === 'disk');
      const response = await fetch(target, {
        method: upload.method,
        headers: Object.fromEntries(upload.headers.map((h) => [h.name, h.value])),
        body: new Uint8Array(bytes),
      });
      expect(response.ok).toBe(true);

      const task = (
        await apollo.mutate({
          mutation: CreateTaskFromUpload,
          variables: { input: { jobDefinition: 'IMAGE_RESIZE', uploadId: upload.id, resize: { width: 800, format: 'PNG' }, run: true } },
        })
      ).data!.createTask;
      if (task.__typename !== 'Task') throw new Error(`createTask: ${JSON.stringify(task)}`);
      expect(task.source).toMatchObject({ byteSize: bytes.length, width: 1600, height: 1200 });
      // The source is the uploaded bytes, unchanged.
      const source = await fetch(new URL(task.source!.url, service.url));
      expect(Buffer.from(await source.arrayBuffer()).equals(bytes)).toBe(true);

      const seen: { status: string; result: { width: number; height: number; url: string; format: string } | null }[] = [];
      const ended = new Promise<void>((resolve, reject) => {
        apollo.subscribe({ query: WatchUploadedTask, variables: { id: task.id } }).subscribe({
          next: (r) => (r.error ? reject(r.error) : r.data && seen.push(r.data.taskUpdated)),
          error: reject,
          complete: resolve,
        });
      });
      await within(ended, 120_000, 'the subscription to complete after DONE');
      const done = seen.at(-1)!;
      expect(done).toMatchObject({ status: 'DONE', result: { format: 'PNG', width: 800, height: 600 } });

      const result = await fetch(new URL(done.result!.url, service.url));
      expect([result.status, result.headers.get('content-type')]).toEqual([200, 'image/png']);
      const meta = await sharp(Buffer.from(await result.arrayBuffer())).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 800, 600]);
    } finally {
      apollo.stop();
      await (wsLink.client as { dispose(): Promise<void> | void }).dispose();
    }
  });

  it("an upload left unused is removed after it expires, bytes included, by the workers' reconciler", async () => {
    const response = await fetch(`${service.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: print(CreateUpload), variables: { input: { contentType: 'image/jpeg', byteSize: bytes.length } } }),
    });
    const upload = (await response.json()).data.createUpload;
    const put = await fetch(new URL(upload.url, service.url), { method: 'PUT', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(bytes) });
    expect(put.ok).toBe(true);
    expect(await infra.blobStore.stat(`uploads/${upload.id}`)).not.toBeNull();
    await infra.sql(`UPDATE "Upload" SET "expiresAt" = now() - interval '1 second' WHERE "id" = $1`, [upload.id]);
    await until(
      async () => (await infra.sql(`SELECT 1 FROM "Upload" WHERE "id" = $1`, [upload.id])).length,
      (rows) => rows === 0,
      60_000,
    );
    expect(await infra.blobStore.stat(`uploads/${upload.id}`)).toBeNull();
    expect(await infra.orphanBlobs()).toEqual([]);
  });
});
