// The clients our users already have, used the way their documentation shows, each
// watching a task's whole life against a real `npm start`: graphql-ws's client,
// graphql-sse's client (both modes), Apollo Client (GraphQLWsLink + apollo-upload-client), urql.
import { ApolloClient, ApolloLink, InMemoryCache } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { Client as UrqlClient, fetchExchange } from '@urql/core';
import UploadHttpLink from 'apollo-upload-client/UploadHttpLink.mjs';
import { getMainDefinition } from '@apollo/client/utilities';
import { print } from 'graphql';
import { createClient as createSseClient } from 'graphql-sse';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphql } from './gql/index.ts';
import { client, until, type Client } from './helpers/client.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { expectOrdered, within } from './helpers/live.ts';
import { startService, type Service } from './helpers/service.ts';
import { createTask } from './helpers/tasks.ts';

const CreateTask = graphql(`
  mutation ClientCreateTask($input: CreateTaskInput!) {
    createTask(input: $input) { __typename ... on Task { id status } ... on Error { message } }
  }
`);

const RunTask = graphql(`
  mutation ClientRunTask($id: ID!) {
    runTask(id: $id) { __typename ... on Task { id status } }
  }
`);

const GetTask = graphql(`
  query ClientGetTask($id: ID!) {
    task(id: $id) { __typename ... on Task { id status } }
  }
`);

const WatchTask = graphql(`
  subscription ClientWatchTask($id: ID!) {
    taskUpdated(id: $id) { id status progress version result { width height url } }
  }
`);

type State = { id: string; status: string; progress: number; version: number; result: { width: number; url: string } | null };

let infra: TestInfra;
let service: Service;
let key: string;
let plain: Client;
let big: Buffer;
let picture: Buffer;

beforeAll(async () => {
  infra = await createInfra('clients');
  [service, big, picture] = await Promise.all([startService(infra, { WORKERS: '1' }), photo(2725, 2225), photo(1600, 1200)]);
  key = await infra.createKey('alice');
  plain = client(service.url, key);
});

afterAll(async () => {
  await service?.stop();
  await infra?.dispose();
});

const wsUrl = () => `${service.url.replace(/^http/, 'ws')}/graphql`;

/** A multipart upload as curl sends it, for the clients that cannot upload. */
function createWithFetch(): Promise<string> {
  return createTask(plain, picture, { width: 800, format: 'PNG' });
}

/**
 * Occupies the only worker, so the task under test stays QUEUED long enough to be seen
 * (a free worker claims it faster than a re-read; the stream coalesces to the newest state).
 */
async function occupyWorker() {
  const response = await plain.upload(
    CreateTask,
    { input: { jobDefinition: 'IMAGE_RESIZE', image: null as unknown as File, resize: { width: 1200, format: 'PNG' }, run: true } },
    { path: 'variables.input.image', bytes: big, name: 'big.jpg', type: 'image/jpeg' },
  );
  const id = (response.data!.createTask as { id: string }).id;
  await until(
    () => plain.request(GetTask, { id }),
    (r) => r.data?.task.__typename === 'Task' && r.data.task.status === 'RUNNING',
    30_000,
    20,
  );
}

/** Collects states until `ended` resolves; checks the whole life and what the stream promises. */
async function expectWholeLife(id: string, seen: State[], ended: Promise<unknown>) {
  await within(ended, 60_000, 'the subscription to complete after DONE');
  expect(seen.map((s) => s.status).filter((s, i, all) => s !== all[i - 1])).toEqual(['CREATED', 'QUEUED', 'RUNNING', 'DONE']);
  expectOrdered(seen);
  expect(seen.every((s) => s.id === id)).toBe(true);
  const done = seen.at(-1)!;
  expect(done).toMatchObject({ status: 'DONE', progress: 1, result: { width: 800, height: 600 } });
  // The result's signed URL works without any header, as an <img src>.
  const image = await fetch(`${service.url}${done.result!.url}`);
  expect([image.status, image.headers.get('content-type')]).toEqual([200, 'image/png']);
}

/** What graphql-ws's and graphql-sse's clients have in common: `subscribe(payload, sink)`. */
interface Subscribing {
  subscribe<Data>(
    payload: { query: string; variables: Record<string, unknown> },
    sink: { next(result: { data?: Data | null }): void; error(error: unknown): void; complete(): void },
  ): () => void;
}

/** Watches a new task through `client`, runs it through the same client, and checks its whole life. */
async function watchAndRun(client: Subscribing) {
  const id = await createWithFetch();
  const seen: State[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    client.subscribe<{ taskUpdated: State }>(
      { query: print(WatchTask), variables: { id } },
      { next: (r) => r.data && seen.push(r.data.taskUpdated), error: reject, complete: resolve },
    );
  });
  await until(async () => seen.length, (n) => n > 0, 20_000, 20);
  await occupyWorker();
  const run = await new Promise<{ data?: unknown }>((resolve, reject) => {
    let result: { data?: unknown };
    client.subscribe({ query: print(RunTask), variables: { id } }, { next: (r) => (result = r), error: reject, complete: () => resolve(result) });
  });
  expect(run.data).toEqual({ runTask: { __typename: 'Task', id, status: 'QUEUED' } });
  await expectWholeLife(id, seen, ended);
}

describe('clients watch a whole task life', () => {
  it("graphql-ws's own client (WebSocket): subscribe, run over the same socket, complete after DONE", async () => {
    const ws = createWsClient({ url: wsUrl(), webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${key}` } });
    try {
      // The mutation goes over the WebSocket too, as graphql-ws allows.
      await watchAndRun(ws);
    } finally {
      await ws.dispose();
    }
  });

  it("graphql-sse's client (SSE, distinct connections): subscribe and run, complete after DONE", async () => {
    const sse = createSseClient({ url: `${service.url}/graphql`, headers: { authorization: `Bearer ${key}` }, retryAttempts: 0 });
    try {
      await watchAndRun(sse);
    } finally {
      sse.dispose();
    }
  });

  it("graphql-sse's client (SSE, single connection): subscribe and run over one stream, complete after DONE", async () => {
    // Every request of the client, to tell which mode it speaks (the reservation, the one stream, operations).
    const requests: string[] = [];
    const sse = createSseClient({
      url: `${service.url}/graphql`,
      headers: { authorization: `Bearer ${key}` },
      singleConnection: true,
      retryAttempts: 0,
      fetchFn: (input: RequestInfo | URL, init?: RequestInit) => {
        requests.push(`${init?.method ?? 'GET'}${new Headers(init?.headers).get('accept') === 'text/event-stream' ? ' stream' : ''}`);
        return fetch(input, init);
      },
    });
    try {
      await watchAndRun(sse);
    } finally {
      sse.dispose();
    }
    // One reservation and one stream for both operations (the subscription and the mutation).
    expect(requests.filter((r) => r === 'PUT')).toHaveLength(1);
    expect(requests.filter((r) => r === 'GET stream')).toHaveLength(1);
    expect(requests.filter((r) => r === 'POST')).toHaveLength(2);
  });

  it('Apollo Client: createTask with apollo-upload-client (a File), taskUpdated through GraphQLWsLink', async () => {
    const wsLink = new GraphQLWsLink(
      createWsClient({ url: wsUrl(), webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${key}` } }),
    );
    const httpLink = new UploadHttpLink({ uri: `${service.url}/graphql`, headers: { authorization: `Bearer ${key}` } });
    const apollo = new ApolloClient({
      // possibleTypes lets Apollo's cache match `... on Error` (an interface) in the unions.
      cache: new InMemoryCache({
        possibleTypes: { Error: ['WrongTaskIdFormat', 'TaskDoesNotExist', 'InvalidTaskState', 'InvalidInput', 'InvalidImage', 'TooManyTasks'] },
      }),
      // The split from Apollo's subscriptions guide: subscriptions over the socket, the rest over HTTP.
      link: ApolloLink.split(
        ({ query }) => {
          const definition = getMainDefinition(query);
          return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
        },
        wsLink,
        httpLink,
      ),
    });
    try {
      const created = await apollo.mutate({
        mutation: CreateTask,
        variables: {
          input: { jobDefinition: 'IMAGE_RESIZE', image: new File([new Uint8Array(picture)], 'photo.jpg', { type: 'image/jpeg' }), resize: { width: 800, format: 'PNG' } },
        },
      });
      expect(created.data?.createTask).toMatchObject({ __typename: 'Task', status: 'CREATED' });
      const id = (created.data!.createTask as { id: string }).id;

      const seen: State[] = [];
      const ended = new Promise<void>((resolve, reject) => {
        apollo.subscribe({ query: WatchTask, variables: { id } }).subscribe({
          next: (r) => {
            if (r.error) reject(r.error);
            else if (r.data) seen.push(r.data.taskUpdated as State);
          },
          error: reject,
          complete: resolve,
        });
      });
      await until(async () => seen.length, (n) => n > 0, 20_000, 20);
      await occupyWorker();
      const run = await apollo.mutate({ mutation: RunTask, variables: { id } });
      expect(run.data?.runTask).toEqual({ __typename: 'Task', id, status: 'QUEUED' });
      await expectWholeLife(id, seen, ended);
    } finally {
      apollo.stop();
      await (wsLink.client as { dispose(): Promise<void> | void }).dispose();
    }
  });

  it('urql: createTask (multipart, a File) and taskUpdated over its fetch-based subscriptions (fetchSubscriptions)', async () => {
    const urql = new UrqlClient({
      url: `${service.url}/graphql`,
      exchanges: [fetchExchange],
      fetchSubscriptions: true,
      fetchOptions: { headers: { authorization: `Bearer ${key}` } },
    });
    const created = await urql
      .mutation(CreateTask, {
        input: { jobDefinition: 'IMAGE_RESIZE', image: new File([new Uint8Array(picture)], 'photo.jpg', { type: 'image/jpeg' }), resize: { width: 800, format: 'PNG' } },
      })
      .toPromise();
    expect(created.error).toBeUndefined();
    expect(created.data?.createTask).toMatchObject({ __typename: 'Task', status: 'CREATED' });
    const id = (created.data!.createTask as { id: string }).id;

    const seen: State[] = [];
    let failure: unknown;
    let markEnd: () => void;
    const ended = new Promise<void>((resolve) => (markEnd = resolve));
    const subscription = urql.subscription(WatchTask, { id }).subscribe((result) => {
      if (result.error) failure = result.error;
      // When the server ends the stream, urql emits the last result again with
      // hasNext: false (its end marker; the server sent that state once).
      else if (result.hasNext === false) markEnd();
      else if (result.data) seen.push(result.data.taskUpdated as State);
    });
    try {
      await until(async () => seen.length, (n) => n > 0, 20_000, 20);
      await occupyWorker();
      const run = await urql.mutation(RunTask, { id }).toPromise();
      expect(run.data?.runTask).toEqual({ __typename: 'Task', id, status: 'QUEUED' });
      await expectWholeLife(id, seen, ended);
      expect(failure).toBeUndefined();
    } finally {
      subscription.unsubscribe();
    }
  });
});
