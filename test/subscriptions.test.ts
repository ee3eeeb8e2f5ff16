// Live updates end to end: a real `npm start` (API + worker), subscriptions over SSE (as
// curl and EventSource see them) and WebSocket (graphql-ws's client), refusals and
// revocation.
import { createHmac } from 'node:crypto';
import { print } from 'graphql';
import { createClient as createSseClient } from 'graphql-sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphql } from './gql/index.ts';
import { client, until, type Client } from './helpers/client.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { countsReach, expectOrdered, liveCounts, NOTHING_OPEN, reserveStream, singleConnection, sse, within, wsClient, wsSubscribe } from './helpers/live.ts';
import { SCRIPTS, startProcess, startService, testEnv, type Service } from './helpers/service.ts';
import { createTask } from './helpers/tasks.ts';

const RunTask = graphql(`
  mutation LiveRunTask($id: ID!) {
    runTask(id: $id) { __typename ... on Task { id status } }
  }
`);

const DeleteTask = graphql(`
  mutation LiveDeleteTask($id: ID!) {
    deleteTask(id: $id) { __typename ... on Task { id status } }
  }
`);

const GetTask = graphql(`
  query LiveGetTask($id: ID!) {
    task(id: $id) { __typename ... on Task { id status version } }
  }
`);

const WatchTask = graphql(`
  subscription WatchTask($id: ID!) {
    taskUpdated(id: $id) {
      id status progress version error
      result { width height url }
      events { status }
    }
  }
`);

const CreateStreamTicket = graphql(`
  mutation LiveCreateStreamTicket {
    createStreamTicket { ticket expiresAt }
  }
`);

const ListTasks = graphql(`
  query LiveListTasks {
    tasks(first: 1) { edges { node { id } } }
  }
`);

const WatchTasks = graphql(`
  subscription WatchTasks($status: [TaskStatus!]) {
    tasksUpdated(status: $status) { id status version }
  }
`);

type State = { id: string; status: string; progress: number; version: number; result: { width: number } | null; events: { status: string }[] };

/** Known to the test, so it can sign an expired ticket as the server would. */
const SIGNING_SECRET = 'signing-secret-of-the-subscriptions-test';

let infra: TestInfra;
let service: Service;
let alice: Client;
let mallory: Client;
let big: Buffer;
let small: Buffer;

beforeAll(async () => {
  infra = await createInfra('live');
  [service, big, small] = await Promise.all([startService(infra, { WORKERS: '1', SIGNING_SECRET }), photo(2725, 2225), photo(64, 48)]);
  alice = client(service.url, await infra.createKey('alice'));
  mallory = client(service.url, await infra.createKey('mallory'));
});

afterAll(async () => {
  await service?.stop();
  await infra?.dispose();
});

const statesOf = (results: { data?: Record<string, unknown> | null }[], field = 'taskUpdated') =>
  results.map((r) => r.data?.[field] as State);

/** Statuses in order with repeats (progress changes) folded. */
const statusPath = (states: { status: string }[]) => states.map((s) => s.status).filter((s, i, all) => s !== all[i - 1]);

/**
 * Queues `id` behind a slow task, so QUEUED lasts long enough to be seen (WORKERS=1): a
 * worker claims a free task within a millisecond or two, faster than a re-read, and the
 * stream coalesces changes into the newest state (see README, "Live updates").
 */
async function runBehindBlocker(c: Client, id: string) {
  const blocker = await createTask(c, big, { width: 1200, format: 'PNG' }, true);
  await until(
    () => c.request(GetTask, { id: blocker }),
    (r) => r.data?.task.__typename === 'Task' && r.data.task.status === 'RUNNING',
    30_000,
    20,
  );
  expect((await c.request(RunTask, { id })).data?.runTask).toMatchObject({ status: 'QUEUED' });
}

describe('taskUpdated', () => {
  it('over SSE: the current state first, then QUEUED, RUNNING with progress, DONE, then the stream ends', async () => {
    const id = await createTask(alice, big, { width: 1600, format: 'PNG' });
    const stream = await sse(service.url, WatchTask, { id }, { key: alice.key });
    expect(stream.status).toBe(200);
    expect(stream.contentType).toMatch(/^text\/event-stream/);
    await stream.waitFor(() => true);
    expect(statesOf(stream.results)[0]).toMatchObject({ id, status: 'CREATED', version: 1, progress: 0, result: null, events: [{ status: 'CREATED' }] });

    await runBehindBlocker(alice, id);
    await within(stream.ended, 60_000, 'the stream to end after DONE');
    const states = statesOf(stream.results);
    expect(statusPath(states)).toEqual(['CREATED', 'QUEUED', 'RUNNING', 'DONE']);
    expectOrdered(states);
    const done = states.at(-1)!;
    expect(done).toMatchObject({ status: 'DONE', progress: 1, error: null, result: { width: 1600 } });
    expect(done.events.map((e) => e.status)).toEqual(['CREATED', 'QUEUED', 'RUNNING', 'DONE']);
    // Progress is pushed while RUNNING, and only moves forward.
    const running = states.filter((s) => s.status === 'RUNNING').map((s) => s.progress);
    expect(running.some((p) => p > 0 && p < 1)).toBe(true);
    expect([...running].sort((a, b) => a - b)).toEqual(running);
    // The server ended it: the last event says so.
    expect(stream.events.at(-1)!.event).toBe('complete');
    // The stream's last state is the truth in PostgreSQL.
    const [row] = await infra.sql<{ status: string; version: number }>(`SELECT status, version FROM "Task" WHERE id = $1`, [id]);
    expect(row).toEqual({ status: 'DONE', version: done.version });
  });

  it('over WebSocket (graphql-transport-ws): the same whole life, then complete', async () => {
    const ws = wsClient(service.url, alice.key);
    try {
      const id = await createTask(alice, big, { width: 1600, format: 'PNG' });
      const stream = wsSubscribe(ws, WatchTask, { id });
      await stream.waitFor(() => true);
      await runBehindBlocker(alice, id);
      expect(await within(stream.ended, 60_000, 'the WebSocket subscription to complete')).toBe('complete');
      const states = statesOf(stream.results);
      expect(statusPath(states)).toEqual(['CREATED', 'QUEUED', 'RUNNING', 'DONE']);
      expectOrdered(states);
      expect(states.at(-1)).toMatchObject({ status: 'DONE', progress: 1, result: { width: 1600 } });
    } finally {
      await ws.dispose();
    }
  });

  it('subscribed after DONE: exactly the final state, then the end (SSE and WebSocket)', async () => {
    const id = await createTask(alice, small, { width: 16 }, true);
    const done = await until(
      () => alice.request(GetTask, { id }),
      (r) => r.data?.task.__typename === 'Task' && r.data.task.status === 'DONE',
    );
    const version = (done.data!.task as { version: number }).version;
    const stream = await sse(service.url, WatchTask, { id }, { key: alice.key });
    await within(stream.ended, 20_000, 'the SSE stream of a DONE task to end');
    expect(statesOf(stream.results)).toEqual([expect.objectContaining({ id, status: 'DONE', version, progress: 1, result: expect.objectContaining({ width: 16 }) })]);
    expect(stream.events.map((e) => e.event)).toEqual(['next', 'complete']);

    const ws = wsClient(service.url, alice.key);
    try {
      const overWs = wsSubscribe(ws, WatchTask, { id });
      expect(await within(overWs.ended, 20_000, 'the WS subscription of a DONE task to complete')).toBe('complete');
      expect(statesOf(overWs.results)).toEqual([expect.objectContaining({ id, status: 'DONE', version })]);
    } finally {
      await ws.dispose();
    }
  });

  it('a DELETE ends the stream with the DELETED state', async () => {
    const id = await createTask(alice, small, { width: 16 });
    const stream = await sse(service.url, WatchTask, { id }, { key: alice.key });
    await stream.waitFor(() => true);
    await alice.request(DeleteTask, { id });
    await within(stream.ended, 20_000, 'the stream to end after DELETE');
    const states = statesOf(stream.results);
    expect(states.map((s) => [s.status, s.version])).toEqual([
      ['CREATED', 1],
      ['DELETED', 2],
    ]);
    expect(stream.events.at(-1)!.event).toBe('complete');
  });

  it('under rapid changes: strictly increasing versions, never a duplicate, the final state last', async () => {
    // Many tasks at once, each watched twice over SSE and once over WebSocket.
    const ws = wsClient(service.url, alice.key);
    try {
      const ids = await Promise.all(Array.from({ length: 6 }, () => createTask(alice, small, { width: 8 })));
      const streams = await Promise.all(
        ids.flatMap((id) => [sse(service.url, WatchTask, { id }, { key: alice.key }), sse(service.url, WatchTask, { id }, { key: alice.key })]),
      );
      const wsStreams = ids.map((id) => wsSubscribe(ws, WatchTask, { id }));
      await Promise.all([...streams, ...wsStreams].map((s) => s.waitFor(() => true)));
      await Promise.all(ids.map((id) => alice.request(RunTask, { id })));
      await within(Promise.all([...streams.map((s) => s.ended), ...wsStreams.map((s) => s.ended)]), 60_000, 'every stream to end');
      for (const stream of [...streams, ...wsStreams]) {
        const states = statesOf(stream.results);
        expectOrdered(states);
        expect(states[0].status).toBe('CREATED');
        expect(states.at(-1)!.status).toBe('DONE');
      }
    } finally {
      await ws.dispose();
    }
  });
});

describe('tasksUpdated', () => {
  it("delivers every change of the caller's own tasks, never another key's, filtered by status on demand", async () => {
    await countsReach(service.url, NOTHING_OPEN);
    const everything = await sse(service.url, WatchTasks, {}, { key: alice.key });
    const ws = wsClient(service.url, alice.key);
    try {
      const onlyDone = wsSubscribe(ws, WatchTasks, { status: ['DONE'] });
      // Both listen once the API counts them (no event comes before a change).
      await countsReach(service.url, { subscriptions: 2 }, 10_000);
      const foreign = await createTask(mallory, small, { width: 8 });
      const foreignWatch = await sse(service.url, WatchTask, { id: foreign }, { key: mallory.key });
      await mallory.request(RunTask, { id: foreign });
      const mine = await Promise.all([createTask(alice, small, { width: 8 }, true), createTask(alice, small, { width: 9 }, true)]);
      const [waited] = await Promise.all(mine.map((id) => everything.waitFor((r) => (r.data?.tasksUpdated as State).id === id && (r.data?.tasksUpdated as State).status === 'DONE')));
      expect(waited).toBeTruthy();
      await Promise.all(mine.map((id) => onlyDone.waitFor((r) => (r.data?.tasksUpdated as State).id === id)));
      // The API has had the foreign task's last change (its owner saw it); a task of alice's
      // changed after that reaches her dashboard after anything that change could have sent.
      await within(foreignWatch.ended, 60_000, "the foreign task's watch to end");
      expect(statesOf(foreignWatch.results).at(-1)!.status).toBe('DONE');
      const barrier = await createTask(alice, small, { width: 7 }, true);
      await everything.waitFor((r) => (r.data?.tasksUpdated as State).id === barrier && (r.data?.tasksUpdated as State).status === 'DONE');
      const all = statesOf(everything.results, 'tasksUpdated');
      expect(all.map((s) => s.id)).not.toContain(foreign);
      for (const id of mine) {
        const states = all.filter((s) => s.id === id);
        expectOrdered(states);
        expect(states.at(-1)!.status).toBe('DONE');
      }
      const done = statesOf(onlyDone.results, 'tasksUpdated').filter((s) => s.id !== barrier);
      expect(done.map((s) => s.status)).toEqual(['DONE', 'DONE']);
      expect(done.map((s) => s.id).sort()).toEqual([...mine].sort());
    } finally {
      everything.close();
      await ws.dispose();
    }
  });
});

describe('refusals: an error with its code, and never a data event', () => {
  const missing = '6f1c1b1e-1d1a-4c1b-9a1b-1c1d1e1f1a1b';

  it.each([
    ['a bad id', 'WRONG_TASK_ID_FORMAT', () => 'not-a-uuid', /"not-a-uuid" is not a task id/],
    ['a missing task', 'TASK_DOES_NOT_EXIST', () => missing, /does not exist/],
    ['a foreign task', 'TASK_DOES_NOT_EXIST', () => foreignTask, /does not exist/],
  ])('%s → %s over SSE (both modes) and WebSocket', async (_, code, id, message) => {
    const stream = await sse(service.url, WatchTask, { id: id() }, { key: alice.key });
    await within(stream.ended, 10_000, 'the refused SSE stream to end');
    expect(stream.results).toHaveLength(1);
    expect(stream.results[0].data ?? null).toBeNull();
    expect(stream.results[0].errors).toEqual([expect.objectContaining({ message: expect.stringMatching(message), extensions: { code } })]);

    // Single-connection mode: the same `next` for that operation, then its `complete`; the stream stays.
    const single = await openStream();
    try {
      expect((await single.start('refused', WatchTask, { id: id() })).status).toBe(202);
      await within(single.waitForComplete('refused'), 10_000, 'the refused operation to complete');
      expect(single.results('refused')).toHaveLength(1);
      expect(single.results('refused')[0].data ?? null).toBeNull();
      expect(single.results('refused')[0].errors).toEqual([expect.objectContaining({ message: expect.stringMatching(message), extensions: { code } })]);
    } finally {
      single.close();
    }

    const ws = wsClient(service.url, alice.key);
    try {
      // graphql-ws sends an execution error as a `next` without data, then `complete`.
      const overWs = wsSubscribe(ws, WatchTask, { id: id() });
      expect(await within(overWs.ended, 10_000, 'the refused WS subscription to end')).toBe('complete');
      expect(overWs.results).toHaveLength(1);
      expect(overWs.results[0].data ?? null).toBeNull();
      expect(overWs.results[0].errors).toEqual([expect.objectContaining({ message: expect.stringMatching(message), extensions: { code } })]);
    } finally {
      await ws.dispose();
    }
  });

  let foreignTask: string;
  beforeAll(async () => {
    foreignTask = await createTask(mallory, small, { width: 8 });
  });

  it.each([
    ['no key', () => null],
    ['a wrong key', () => 'tl_not-a-key'],
    ['a revoked key', () => revokedKey],
  ])('%s: SSE gets 401 UNAUTHENTICATED, WebSocket is closed with 4401 and not retried', async (_, key) => {
    // 401 (so a browser's EventSource gives up instead of reconnecting), one error event, the end.
    const unauthenticated = [{ errors: [expect.objectContaining({ extensions: { code: 'UNAUTHENTICATED' } })] }];
    for (const method of ['POST', 'GET'] as const) {
      const stream = await sse(service.url, WatchTask, { id: foreignTask }, { key: key(), method });
      expect(stream.status).toBe(401);
      await within(stream.ended, 10_000, 'the refused SSE stream to end');
      expect(stream.results).toEqual(unauthenticated);
      expect(stream.events.map((e) => e.event)).toEqual(['next', 'complete']);
    }
    const viaToken = await sse(service.url, WatchTasks, {}, { token: key() ?? '' });
    expect(viaToken.status).toBe(401);
    await within(viaToken.ended, 10_000, 'the refused SSE stream to end');
    expect(viaToken.results).toEqual(unauthenticated);

    // Single-connection mode: the reservation (PUT) is refused alike, so no stream opens;
    // graphql-sse's client reports the 401 (its retries, when allowed, end the same way).
    const reserved = await reserveStream(service.url, key());
    expect([reserved.status, reserved.headers.get('www-authenticate')]).toEqual([401, 'Bearer']);
    expect(await reserved.json()).toEqual(unauthenticated[0]);
    const single = createSseClient({
      url: `${service.url}/graphql`,
      headers: key() ? { authorization: `Bearer ${key()}` } : {},
      singleConnection: true,
      retryAttempts: 0,
    });
    const failure = await within(
      new Promise<unknown>((resolve) => {
        single.subscribe({ query: print(WatchTasks), variables: {} }, { next: () => resolve('a result'), error: resolve, complete: () => resolve('complete') });
      }),
      10_000,
      'the single-connection client to give up',
    );
    expect(failure).toMatchObject({ name: 'NetworkError', response: { status: 401 } });
    single.dispose();

    // graphql-ws's client with its default retries: 4401 is final, so it gives up at once.
    const ws = wsClient(service.url, key(), { retryAttempts: 5 });
    const overWs = wsSubscribe(ws, WatchTasks, {});
    const ended = (await within(overWs.ended, 10_000, 'the refused WebSocket to close')) as { error: { code: number; reason: string } };
    expect(overWs.results).toEqual([]);
    expect(ended.error).toMatchObject({ code: 4401, reason: 'Unauthorized: a valid API key is required' });
    expect(ws.closed).toHaveLength(1);
    await ws.dispose();
  });

  let revokedKey: string;
  beforeAll(async () => {
    revokedKey = await infra.createKey('erin');
    await infra.sql(`UPDATE "ApiKey" SET "revokedAt" = now() WHERE name = 'erin'`);
  });
});

async function streamTicket(c: Client): Promise<string> {
  const { data, status } = await c.request(CreateStreamTicket);
  expect(status).toBe(200);
  return data!.createStreamTicket.ticket;
}

describe('stream tickets (EventSource without the key in its URL)', () => {
  const unauthenticated = [{ errors: [expect.objectContaining({ extensions: { code: 'UNAUTHENTICATED' } })] }];

  async function expectRefusedStream(stream: Awaited<ReturnType<typeof sse>>) {
    expect(stream.status).toBe(401);
    await within(stream.ended, 10_000, 'the refused SSE stream to end');
    expect(stream.results).toEqual(unauthenticated);
  }

  it('a key trades for a 60 s ticket that opens an SSE subscription as ?ticket= (GET, as EventSource does)', async () => {
    const before = Date.now();
    const { data } = await alice.request(CreateStreamTicket);
    const { ticket, expiresAt } = data!.createStreamTicket;
    expect(ticket).not.toContain(alice.key!.slice(3, 20));
    expect(Date.parse(expiresAt) - before).toBeGreaterThan(55_000);
    expect(Date.parse(expiresAt) - before).toBeLessThanOrEqual(61_000);

    const id = await createTask(alice, small, { width: 8 });
    const stream = await sse(service.url, WatchTask, { id }, { ticket });
    try {
      expect(stream.status).toBe(200);
      const first = await stream.waitFor(() => true);
      expect(first.data?.taskUpdated).toMatchObject({ id, status: 'CREATED' });
      // Usable again until it expires (a reconnect may reuse it); the dashboard fetches a fresh one anyway.
      const again = await sse(service.url, WatchTasks, {}, { ticket });
      expect(again.status).toBe(200);
      again.close();
    } finally {
      stream.close();
    }
  });

  it('a tampered or expired ticket is refused with 401 UNAUTHENTICATED', async () => {
    const ticket = await streamTicket(alice);
    const [keyId, expires, signature] = ticket.split('.');
    const flip = (text: string) => text.slice(0, -2) + (text.at(-2) === 'A' ? 'B' : 'A') + text.at(-1);
    const sign = (exp: number) => createHmac('sha256', SIGNING_SECRET).update(`stream-ticket.${keyId}.${exp}`).digest('base64url');
    const expired = Math.floor(Date.now() / 1000) - 1;
    // The genuine article works, signed by the test as by the server; the variants do not.
    expect(sign(Number(expires))).toBe(signature);
    for (const bad of [
      `${keyId}.${expires}.${flip(signature)}`,
      `${keyId}.${Number(expires) + 3600}.${signature}`,
      `${mallory.key}.${expires}.${signature}`,
      `${keyId}.${expired}.${sign(expired)}`,
      `${ticket}x`,
      '',
    ]) {
      await expectRefusedStream(await sse(service.url, WatchTasks, {}, { ticket: bad }));
    }
  });

  it('a ticket is no credential anywhere but an SSE subscription: not as a key, not on a query, nor REST, images, WebSocket', async () => {
    const ticket = await streamTicket(alice);
    // As a bearer key or ?token=: GraphQL over HTTP, SSE, REST, images.
    const asKey = client(service.url, ticket);
    expect(await asKey.request(ListTasks)).toMatchObject({ status: 401, errors: [{ extensions: { code: 'UNAUTHENTICATED' } }] });
    expect((await asKey.request(CreateStreamTicket)).status).toBe(401);
    await expectRefusedStream(await sse(service.url, WatchTasks, {}, { key: ticket }));
    await expectRefusedStream(await sse(service.url, WatchTasks, {}, { token: ticket }));
    expect((await fetch(`${service.url}/api/tasks`, { headers: { authorization: `Bearer ${ticket}` } })).status).toBe(401);
    expect((await fetch(`${service.url}/api/tasks?ticket=${ticket}`)).status).toBe(401);
    const id = await createTask(alice, small, { width: 8 });
    const { data } = await alice.request(graphql(`query LiveSource($id: ID!) { task(id: $id) { ... on Task { source { id } } } }`), { id });
    const imageId = (data!.task as { source: { id: string } }).source.id;
    expect((await fetch(`${service.url}/images/${imageId}`, { headers: { authorization: `Bearer ${ticket}` } })).status).toBe(401);
    expect((await fetch(`${service.url}/images/${imageId}?ticket=${ticket}`)).status).toBe(401);
    // As ?ticket= on anything but a subscription over SSE: a query, a mutation, a POSTed subscription.
    const url = (query: string) => `${service.url}/graphql?query=${encodeURIComponent(query)}&ticket=${encodeURIComponent(ticket)}`;
    for (const accept of ['text/event-stream', 'application/graphql-response+json']) {
      const response = await fetch(url('{ tasks(first: 1) { edges { node { id } } } }'), { headers: { accept } });
      expect(response.status).toBe(401);
      expect(await response.text()).toContain('UNAUTHENTICATED');
    }
    const mutation = await fetch(`${service.url}/graphql?ticket=${encodeURIComponent(ticket)}`, {
      method: 'POST',
      headers: { accept: 'application/json', 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'mutation { createStreamTicket { ticket } }' }),
    });
    expect(mutation.status).toBe(401);
    await expectRefusedStream(await sse(service.url, WatchTasks, {}, { ticket, method: 'POST' }));
    // WebSocket: connectionParams.authorization wants a key.
    const ws = wsClient(service.url, ticket);
    const overWs = wsSubscribe(ws, WatchTasks, {});
    const ended = (await within(overWs.ended, 10_000, 'the refused WebSocket to close')) as { error: { code: number } };
    expect(ended.error).toMatchObject({ code: 4401 });
    await ws.dispose();
  });
});

/** A reservation of `c` (alice) and its open stream (single-connection mode). */
async function openStream(c: Client = alice) {
  const reserved = await reserveStream(service.url, c.key);
  expect(reserved.status).toBe(201);
  const stream = await singleConnection(service.url, await reserved.text(), { key: c.key });
  expect(stream.status).toBe(200);
  return stream;
}

describe('SSE single-connection mode (graphql-sse: singleConnection: true)', () => {
  const unauthenticated = { errors: [expect.objectContaining({ extensions: { code: 'UNAUTHENTICATED' } })] };

  it('one stream carries several operations: the whole life of a task, a dashboard, a query; DELETE stops one, the rest go on', async () => {
    await countsReach(service.url, NOTHING_OPEN);
    const reserved = await reserveStream(service.url, alice.key);
    expect([reserved.status, reserved.headers.get('content-type')]).toEqual([201, 'text/plain; charset=utf-8']);
    const token = await reserved.text();
    expect(token).toMatch(/^sse\./);
    expect(token).not.toContain(alice.key!.slice(3, 20));
    const stream = await singleConnection(service.url, token, { key: alice.key });
    try {
      expect([stream.status, stream.headers.get('content-type')]).toEqual([200, 'text/event-stream']);
      const id = await createTask(alice, big, { width: 1600, format: 'PNG' });
      expect((await stream.start('watch', WatchTask, { id })).status).toBe(202);
      expect((await stream.start('dashboard', WatchTasks, {})).status).toBe(202);
      expect((await stream.waitFor('watch', () => true)).data?.taskUpdated).toMatchObject({ id, status: 'CREATED' });
      await countsReach(service.url, { subscriptions: 2 }, 10_000);

      await runBehindBlocker(alice, id);
      await stream.waitForComplete('watch');
      const states = statesOf(stream.results('watch'));
      expect(statusPath(states)).toEqual(['CREATED', 'QUEUED', 'RUNNING', 'DONE']);
      expectOrdered(states);
      expect(states.at(-1)).toMatchObject({ status: 'DONE', progress: 1, result: { width: 1600 } });
      expect(states.some((s) => s.status === 'RUNNING' && s.progress > 0 && s.progress < 1)).toBe(true);
      // The dashboard on the same stream saw it too, and goes on.
      await stream.waitFor('dashboard', (r) => (r.data?.tasksUpdated as State | undefined)?.id === id && (r.data?.tasksUpdated as State).status === 'DONE');
      expect(stream.completed('dashboard')).toBe(false);

      // DELETE ends the dashboard's subscription (no `complete`: the client asked), the stream stays.
      expect((await stream.stop('dashboard')).status).toBe(200);
      await countsReach(service.url, { subscriptions: 0 }, 10_000);
      expect(stream.completed('dashboard')).toBe(false);
      // Queries and mutations go over the stream too.
      expect((await stream.start('query', GetTask, { id })).status).toBe(202);
      await stream.waitForComplete('query');
      expect(stream.results('query')).toEqual([{ data: { task: { __typename: 'Task', id, status: 'DONE', version: states.at(-1)!.version } } }]);
      // An operation id in use on the stream is refused.
      expect((await stream.start('same', WatchTasks, {})).status).toBe(202);
      expect((await stream.start('same', WatchTasks, {})).status).toBe(409);
    } finally {
      stream.close();
    }
    await countsReach(service.url, NOTHING_OPEN, 10_000);
  });

  it('graphql-sse\'s own client: a refusal (bad id) arrives as an error result, and the client completes', async () => {
    const sseClient = createSseClient({ url: `${service.url}/graphql`, headers: { authorization: `Bearer ${alice.key}` }, singleConnection: true, retryAttempts: 0 });
    try {
      const results: unknown[] = [];
      await within(
        new Promise<void>((resolve, reject) => {
          sseClient.subscribe({ query: print(WatchTask), variables: { id: 'not-a-uuid' } }, { next: (r) => results.push(r), error: reject, complete: resolve });
        }),
        10_000,
        'the refused subscription to complete',
      );
      expect(results).toEqual([{ errors: [expect.objectContaining({ extensions: { code: 'WRONG_TASK_ID_FORMAT' } })] }]);
    } finally {
      sseClient.dispose();
    }
  });

  it('a reservation opens one stream, once; a tampered or expired one none; operations need the key too; the token is no key, and no key is a token', async () => {
    const token = await (await reserveStream(service.url, alice.key)).text();
    const first = await singleConnection(service.url, token, { key: alice.key });
    try {
      expect(first.status).toBe(200);
      const second = await singleConnection(service.url, token);
      expect(second.status).toBe(409);
      expect(JSON.parse(second.body).errors[0].extensions.code).toBe('CONFLICT');
      // The token routes, the key authorises: with no key, or another owner's, nothing runs or stops.
      const id = await createTask(alice, small, { width: 8 });
      expect((await first.start('watch', WatchTask, { id })).status).toBe(202);
      await first.waitFor('watch', () => true);
      for (const key of [null, mallory.key, 'tl_not-a-key']) {
        const headers = { 'x-graphql-event-stream-token': token, ...(key ? { authorization: `Bearer ${key}` } : {}) };
        const post = await fetch(`${service.url}/graphql`, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json' },
          body: JSON.stringify({ query: `mutation { deleteTask(id: "${id}") { __typename } }`, extensions: { operationId: 'x' } }),
        });
        const stop = await fetch(`${service.url}/graphql?operationId=watch`, { method: 'DELETE', headers });
        expect([key, post.status, (await post.json()).errors[0].extensions.code, stop.status]).toEqual([key, 401, 'UNAUTHENTICATED', 401]);
      }
      // Nothing was deleted, nothing stopped: the watch still gets the task's next state.
      await alice.request(RunTask, { id });
      await first.waitForComplete('watch');
      expect(statesOf(first.results('watch')).at(-1)).toMatchObject({ status: 'DONE' });
      expect(first.results('x')).toEqual([]);
    } finally {
      first.close();
    }
    await first.ended;
    // Once closed, it stays used: its operations have nowhere to go.
    expect((await singleConnection(service.url, token)).status).toBe(409);
    const afterwards = await first.start('late', WatchTasks, {});
    expect(afterwards.status).toBe(404);

    const [, keyId, expires, nonce, signature] = token.split('.');
    const flip = (text: string) => text.slice(0, -2) + (text.at(-2) === 'A' ? 'B' : 'A') + text.at(-1);
    const sign = (exp: number, n = nonce) => createHmac('sha256', SIGNING_SECRET).update(`stream-reservation.${keyId}.${n}.${exp}`).digest('base64url');
    expect(sign(Number(expires))).toBe(signature); // the genuine article, signed by the test as by the server
    const expired = Math.floor(Date.now() / 1000) - 1;
    const freshNonce = 'AAAAAAAAAAAAAAAAAAAAAA';
    for (const bad of [
      `sse.${keyId}.${expires}.${nonce}.${flip(signature)}`,
      `sse.${keyId}.${Number(expires) + 3600}.${nonce}.${signature}`,
      `sse.${keyId}.${expired}.${freshNonce}.${sign(expired, freshNonce)}`,
      `${token}x`,
      alice.key!,
    ]) {
      const refused = await singleConnection(service.url, bad);
      expect([bad, refused.status]).toEqual([bad, 401]);
      expect(JSON.parse(refused.body)).toEqual(unauthenticated);
    }
    // No token at all, on an operation or a DELETE: 401.
    const bare = await fetch(`${service.url}/graphql?operationId=x`, { method: 'DELETE' });
    expect(bare.status).toBe(401);
    // A reservation is no API key: not as a bearer key on GraphQL or REST, not as ?token= of a distinct SSE subscription.
    const fresh = await (await reserveStream(service.url, alice.key)).text();
    expect((await client(service.url, fresh).request(ListTasks)).status).toBe(401);
    expect((await fetch(`${service.url}/api/tasks`, { headers: { authorization: `Bearer ${fresh}` } })).status).toBe(401);
    expect((await reserveStream(service.url, fresh)).status).toBe(401); // nor does it reserve another
  });

  it('?token= carries the reservation for an EventSource (no header); an API key as ?token= is still a key', async () => {
    const token = await (await reserveStream(service.url, alice.key)).text();
    const stream = await singleConnection(service.url, token, { key: alice.key, tokenIn: 'query' });
    try {
      expect(stream.status).toBe(200);
      const id = await createTask(alice, small, { width: 8 });
      expect((await stream.start('watch', WatchTask, { id })).status).toBe(202);
      expect((await stream.waitFor('watch', () => true)).data?.taskUpdated).toMatchObject({ id, status: 'CREATED' });
    } finally {
      stream.close();
    }
    const viaKey = await sse(service.url, WatchTasks, {}, { token: alice.key! });
    expect(viaKey.status).toBe(200);
    viaKey.close();
  });

  it('answers a browser on another origin: the preflight of PUT, POST and DELETE with the token header, and every response', async () => {
    const origin = 'https://app.example';
    const cors = (response: Response) =>
      Object.fromEntries(['access-control-allow-origin', 'access-control-allow-credentials', 'vary'].map((name) => [name, response.headers.get(name)]));
    const query = await fetch(`${service.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${alice.key}`, origin },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(cors(query)['access-control-allow-origin']).toBe(origin);
    for (const [method, search] of [['PUT', ''], ['POST', ''], ['DELETE', '?operationId=o'], ['POST', '?token=sse.x']]) {
      const preflight = await fetch(`${service.url}/graphql${search}`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': 'authorization,content-type,x-graphql-event-stream-token' },
      });
      expect(preflight.status).toBeLessThan(300);
      expect(preflight.headers.get('access-control-allow-origin')).toBe(origin);
      expect(preflight.headers.get('access-control-allow-methods')).toContain(method);
      expect(preflight.headers.get('access-control-allow-headers')).toContain('x-graphql-event-stream-token');
    }
    const reserved = await reserveStream(service.url, alice.key, { origin });
    expect(cors(reserved)).toEqual(cors(query));
    const token = await reserved.text();
    const stream = await singleConnection(service.url, token, { key: alice.key, headers: { origin } });
    try {
      expect(cors({ headers: stream.headers } as Response)).toEqual(cors(query));
      const tokenHeader = { 'x-graphql-event-stream-token': token, authorization: `Bearer ${alice.key}`, origin };
      const started = await fetch(`${service.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...tokenHeader },
        body: JSON.stringify({ query: 'subscription { tasksUpdated { id } }', extensions: { operationId: 'o' } }),
      });
      expect(started.status).toBe(202);
      expect(cors(started)).toEqual(cors(query));
      const stopped = await fetch(`${service.url}/graphql?operationId=o`, { method: 'DELETE', headers: tokenHeader });
      expect(stopped.status).toBe(200);
      expect(cors(stopped)).toEqual(cors(query));
    } finally {
      stream.close();
    }
  });

  it('refuses a malformed operation with 400 before it reaches the stream; a document error goes to the stream, as in the other modes', async () => {
    const stream = await openStream();
    try {
      const post = (body: unknown, contentType = 'application/json') =>
        fetch(`${service.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': contentType, 'x-graphql-event-stream-token': stream.token, authorization: `Bearer ${alice.key}` },
          body: typeof body === 'string' ? body : JSON.stringify(body),
        });
      for (const [body, contentType] of [
        [{ query: '{ __typename }' }, 'application/json'], // no operationId
        [{ query: '{ __typename }', extensions: { operationId: '' } }, 'application/json'],
        [{ extensions: { operationId: 'a' } }, 'application/json'],
        ['{not json', 'application/json'],
        ['query=x', 'application/x-www-form-urlencoded'],
      ] as const) {
        const response = await post(body, contentType);
        expect([body, response.status]).toEqual([body, 400]);
        expect((await response.json()).errors[0].extensions.code).toBe('BAD_REQUEST');
      }
      expect((await stream.start('syntax', 'subscription {', {})).status).toBe(202);
      expect((await stream.start('invalid', 'subscription { nothing }', {})).status).toBe(202);
      await Promise.all([stream.waitForComplete('syntax'), stream.waitForComplete('invalid')]);
      expect(stream.results('syntax')).toEqual([{ errors: [expect.objectContaining({ extensions: { code: 'GRAPHQL_PARSE_FAILED' } })] }]);
      expect(stream.results('invalid')).toEqual([{ errors: [expect.objectContaining({ extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })] }]);
    } finally {
      stream.close();
    }
  });
});

describe('identical subscriptions', () => {
  it('share one stream: each subscriber gets the whole life; a late one starts from the current state; one leaving disturbs nobody', async () => {
    await countsReach(service.url, NOTHING_OPEN);
    const id = await createTask(alice, big, { width: 1600, format: 'PNG' });
    const overSse = await Promise.all(Array.from({ length: 4 }, () => sse(service.url, WatchTask, { id }, { key: alice.key })));
    const ws = wsClient(service.url, alice.key);
    // Another owner's identical subscription must not join alice's stream: refused as foreign.
    const foreign = await sse(service.url, WatchTask, { id }, { key: mallory.key });
    try {
      const overWs = Array.from({ length: 4 }, () => wsSubscribe(ws, WatchTask, { id }));
      const all = [...overSse, ...overWs];
      await Promise.all(all.map((stream) => stream.waitFor(() => true)));
      await within(foreign.ended, 10_000, 'the foreign subscription to be refused');
      expect(foreign.results[0].errors?.[0].extensions?.code).toBe('TASK_DOES_NOT_EXIST');
      expect(await liveCounts(service.url)).toEqual({ streams: 1, subscriptions: 8 });

      overSse[0].close(); // leaves before anything happens
      overWs[0].stop();
      await runBehindBlocker(alice, id);
      await overSse[1].waitFor((r) => (r.data?.taskUpdated as State | undefined)?.status === 'RUNNING', 60_000);
      const late = await sse(service.url, WatchTask, { id }, { key: alice.key });
      const lateWs = wsSubscribe(ws, WatchTask, { id });
      await within(Promise.all([...overSse.slice(1).map((s) => s.ended), ...overWs.slice(1).map((s) => s.ended), late.ended, lateWs.ended]), 60_000, 'every stream to end after DONE');

      for (const stream of [...overSse.slice(1), ...overWs.slice(1)]) {
        const states = statesOf(stream.results);
        expect(statusPath(states)).toEqual(['CREATED', 'QUEUED', 'RUNNING', 'DONE']);
        expectOrdered(states);
      }
      // Every subscriber of the stream saw the same versions (one execution, the same results).
      const versions = (stream: { results: { data?: Record<string, unknown> | null }[] }) => statesOf(stream.results).map((s) => s.version);
      for (const stream of [...overSse.slice(2), ...overWs.slice(1)]) expect(versions(stream)).toEqual(versions(overSse[1]));
      // The late ones start from the state current when they joined (RUNNING or later), never an older one.
      for (const stream of [late, lateWs]) {
        const states = statesOf(stream.results);
        expect(['RUNNING', 'DONE']).toContain(states[0].status);
        expect(states.at(-1)!.status).toBe('DONE');
        expectOrdered(states);
      }
      await countsReach(service.url, NOTHING_OPEN, 10_000);
    } finally {
      for (const stream of overSse) stream.close();
      foreign.close();
      await ws.dispose();
    }
  });
  it('answer a browser on another origin with the same CORS headers as every other GraphQL response', async () => {
    const id = await createTask(alice, small, { width: 8 });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${alice.key}`, origin: 'https://app.example' };
    const cors = (response: Response) =>
      Object.fromEntries(['access-control-allow-origin', 'access-control-allow-credentials', 'vary'].map((name) => [name, response.headers.get(name)]));
    const query = await fetch(`${service.url}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query: '{ __typename }' }) });
    const abort = new AbortController();
    const subscription = await fetch(`${service.url}/graphql`, {
      method: 'POST',
      headers: { ...headers, accept: 'text/event-stream' },
      body: JSON.stringify({ query: 'subscription ($id: ID!) { taskUpdated(id: $id) { id } }', variables: { id } }),
      signal: abort.signal,
    });
    expect(subscription.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(cors(subscription)).toEqual(cors(query));
    expect(cors(subscription)['access-control-allow-origin']).toBe('https://app.example');
    abort.abort();
  });

  it('leave nothing behind when their clients go away at once, even mid-subscribe', async () => {
    await countsReach(service.url, NOTHING_OPEN);
    const id = await createTask(alice, small, { width: 8 });
    // Abort after 0–20 ms: some while the request is read, some while it subscribes, some streaming.
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const abort = new AbortController();
        setTimeout(() => abort.abort(), i % 21);
        const body = JSON.stringify({ query: 'subscription ($id: ID!) { taskUpdated(id: $id) { id status } }', variables: { id } });
        await fetch(`${service.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${alice.key}` },
          body,
          signal: abort.signal,
        })
          .then((response) => response.body?.cancel())
          .catch(() => {});
      }),
    );
    await countsReach(service.url, NOTHING_OPEN, 10_000);
  });

  it('leave nothing behind in single-connection mode either: a stream closed with operations running, or an operation started as it closes', async () => {
    await countsReach(service.url, NOTHING_OPEN);
    const id = await createTask(alice, small, { width: 8 });
    await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const stream = await openStream();
        const started = [stream.start('a', WatchTask, { id }), stream.start('b', WatchTasks, {})];
        if (i % 2) await Promise.all(started);
        stream.close();
        await Promise.allSettled(started);
      }),
    );
    await countsReach(service.url, NOTHING_OPEN, 10_000);
  });
});

describe('revocation', () => {
  it('`npm run key -- revoke` ends the open subscriptions of that name (SSE in both modes, WebSocket), and only those', async () => {
    await countsReach(service.url, NOTHING_OPEN);
    const daveKey = await infra.createKey('dave');
    const dave = client(service.url, daveKey);
    const id = await createTask(dave, small, { width: 8 });
    const aliceId = await createTask(alice, small, { width: 8 });
    const overSse = await sse(service.url, WatchTask, { id }, { key: daveKey });
    const dashboard = await sse(service.url, WatchTasks, {}, { token: daveKey });
    const [ticket, laterTicket] = [await streamTicket(dave), await streamTicket(dave)];
    const viaTicket = await sse(service.url, WatchTask, { id }, { ticket });
    const single = await openStream(dave);
    const ws = wsClient(service.url, daveKey);
    const aliceWs = wsClient(service.url, alice.key);
    try {
      expect((await single.start('watch', WatchTask, { id })).status).toBe(202);
      expect((await single.start('dashboard', WatchTasks, {})).status).toBe(202);
      await single.waitFor('watch', () => true);
      const overWs = wsSubscribe(ws, WatchTask, { id });
      const aliceStream = wsSubscribe(aliceWs, WatchTask, { id: aliceId });
      await Promise.all([overSse.waitFor(() => true), viaTicket.waitFor(() => true), overWs.waitFor(() => true), aliceStream.waitFor(() => true)]);
      // The dashboards have no first event: they listen once the API counts all seven.
      await countsReach(service.url, { subscriptions: 7 }, 10_000);

      const revoke = startProcess(SCRIPTS.key, testEnv(infra, { LOG_LEVEL: 'silent' }), ['revoke', 'dave']);
      expect(await revoke.exited).toBe(0);

      await within(Promise.all([overSse.ended, dashboard.ended, viaTicket.ended, single.ended]), 10_000, 'the SSE streams to end');
      const unauthenticated = expect.objectContaining({ extensions: { code: 'UNAUTHENTICATED' } });
      // Single-connection mode: each operation ends with the refusal, then the stream itself.
      expect(single.results('watch').map((r) => (r.data?.taskUpdated ? 'data' : r.errors))).toEqual(['data', [unauthenticated]]);
      expect(single.results('dashboard').at(-1)?.errors).toEqual([unauthenticated]);
      expect([single.completed('watch'), single.completed('dashboard')]).toEqual([true, true]);
      // Its token, and a reservation of the revoked key, open nothing any more.
      expect((await single.start('again', WatchTasks, {})).status).toBe(401);
      expect((await reserveStream(service.url, daveKey)).status).toBe(401);
      expect(overSse.results.map((r) => r.data?.taskUpdated ? 'data' : r.errors)).toEqual(['data', [unauthenticated]]);
      expect(viaTicket.results.map((r) => r.data?.taskUpdated ? 'data' : r.errors)).toEqual(['data', [unauthenticated]]);
      // A ticket of the revoked key, still within its 60 s, opens nothing any more.
      const late = await sse(service.url, WatchTask, { id }, { ticket: laterTicket });
      expect(late.status).toBe(401);
      await within(late.ended, 10_000, 'the refused SSE stream to end');
      expect(late.results).toEqual([{ errors: [unauthenticated] }]);
      // The dashboard may have seen dave's task (created just before it subscribed: the periodic
      // catch-up can report it); it ends with the refusal either way.
      expect(dashboard.results.at(-1)?.errors).toEqual([unauthenticated]);
      expect(dashboard.results.slice(0, -1).every((r) => (r.data?.tasksUpdated as { id?: string } | undefined)?.id === id)).toBe(true);
      const ended = (await within(overWs.ended, 10_000, 'the WS subscription to end')) as { error: unknown };
      expect(ended.error).toEqual([unauthenticated]);
      expect(overWs.results).toHaveLength(1);
      // Nothing more reaches dave, even when his task changes.
      await dave.request(DeleteTask, { id }); // refused: the key is revoked
      expect((await dave.request(GetTask, { id })).status).toBe(401);
      // alice's subscription is untouched.
      await alice.request(DeleteTask, { id: aliceId });
      expect(await within(aliceStream.ended, 10_000, "alice's stream to end with DELETED")).toBe('complete');
      expect(statesOf(aliceStream.results).map((s) => s.status)).toEqual(['CREATED', 'DELETED']);
      // Every subscription ended (the revoked ones with an error): the API counts none open.
      await countsReach(service.url, NOTHING_OPEN, 10_000);
    } finally {
      single.close();
      overSse.close();
      viaTicket.close();
      dashboard.close();
      await ws.dispose();
      await aliceWs.dispose();
    }
  });
});
