// Live updates across processes and through Redis trouble: two API processes on one
// database and Redis (the first with the worker, the second only delivering; in SSE's
// single-connection mode, the stream on one and its operations sent to the other), and the
// second's pub/sub connection cut with CLIENT KILL, or kept off Redis by a proxy while
// the task finishes (so its change message is lost for sure).
import { print } from 'graphql';
import { createClient as createSseClient } from 'graphql-sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphql } from './gql/index.ts';
import { client, until, type Client } from './helpers/client.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import {
  countsReach,
  expectOrdered,
  NOTHING_OPEN,
  reserveStream,
  singleConnection,
  sse,
  within,
  wsClient,
  wsSubscribe,
  type SseStream,
  type WsStream,
} from './helpers/live.ts';
import { startRedisProxy, type RedisProxy } from './helpers/redis-proxy.ts';
import { SCRIPTS, startService, type Service } from './helpers/service.ts';
import { createTask } from './helpers/tasks.ts';

const RunTask = graphql(`
  mutation CrossRunTask($id: ID!) {
    runTask(id: $id) { __typename ... on Task { id status } }
  }
`);

const WatchTask = graphql(`
  subscription CrossWatchTask($id: ID!) {
    taskUpdated(id: $id) { id status progress version result { width } }
  }
`);

const WatchTasks = graphql(`
  subscription CrossWatchTasks {
    tasksUpdated { id status version }
  }
`);

type State = { id: string; status: string; progress: number; version: number };

let infra: TestInfra;
let first: Service; // `npm start`: API + worker
let second: Service; // `npm run api` only, its Redis through `proxy`
let proxy: RedisProxy;
let viaFirst: Client;
let key: string;
let big: Buffer;
let small: Buffer;

beforeAll(async () => {
  infra = await createInfra('cross');
  proxy = await startRedisProxy();
  [first, big, small] = await Promise.all([startService(infra, { WORKERS: '1' }), photo(2725, 2225), photo(64, 48)]);
  // No periodic resync here: these tests must show the resync that follows a reconnect.
  second = await startService(infra, { REDIS_URL: proxy.url, LIVE_RESYNC_INTERVAL_MS: '0' }, SCRIPTS.api);
  key = await infra.createKey('alice');
  viaFirst = client(first.url, key);
});

afterAll(async () => {
  if (process.env.DEBUG_LIVE) console.log(second?.output().slice(-6000));
  await Promise.all([first?.stop(), second?.stop()]);
  await proxy?.close();
  await infra?.dispose();
});

const states = (stream: { results: { data?: Record<string, unknown> | null }[] }, field = 'taskUpdated') =>
  stream.results.map((r) => r.data?.[field] as State);
const isDone = (id: string, field = 'taskUpdated') => (r: { data?: Record<string, unknown> | null }) =>
  (r.data?.[field] as State | undefined)?.id === id && (r.data?.[field] as State).status === 'DONE';

type ClientEntry = { id: string; addr: string; name: string; sub: number };
async function clientList(): Promise<ClientEntry[]> {
  const text = (await infra.redis.client('LIST')) as string;
  return text
    .trim()
    .split('\n')
    .map((line) => Object.fromEntries(line.split(' ').map((pair) => pair.split('=', 2))))
    .map((c) => ({ id: c.id, addr: c.addr, name: c.name, sub: Number(c.sub) }));
}

/**
 * Waits until no API (the first, the second, and `others`) has a subscription or stream open.
 * Each one's own counts are live in its /metrics (the others' are their last snapshots): once
 * every one shows none, whatever a test opens next is all there is.
 */
function nothingOpen(...others: Service[]) {
  return Promise.all([first, second, ...others].map((api) => countsReach(api.url, NOTHING_OPEN)));
}

/** The second API's pub/sub subscriber connection: by its name and the proxy's ports. */
async function secondSubscriber(): Promise<ClientEntry | undefined> {
  const ports = proxy.upstreamPorts();
  return (await clientList()).find((c) => c.name === `${infra.redisPrefix}:subscriber` && ports.has(Number(c.addr.split(':').at(-1))));
}

describe('two API processes on one database and Redis', () => {
  it('the second delivers (SSE and WebSocket) the whole life of a task run through the first', async () => {
    await nothingOpen();
    const id = await createTask(viaFirst, big, { width: 1200, format: 'PNG' });
    const overSse = await sse(second.url, WatchTask, { id }, { key });
    const ws = wsClient(second.url, key);
    try {
      const overWs = wsSubscribe(ws, WatchTask, { id });
      const dashboard = wsSubscribe(ws, WatchTasks, {});
      await Promise.all([overSse.waitFor(() => true), overWs.waitFor(() => true)]);
      // The dashboard has no first event: it listens once the second counts all three.
      await countsReach(second.url, { subscriptions: 3 }, 10_000);
      expect((await viaFirst.request(RunTask, { id })).data?.runTask).toMatchObject({ status: 'QUEUED' });
      await within(overSse.ended, 60_000, 'the SSE stream on the second API to end');
      expect(await within(overWs.ended, 60_000, 'the WS stream on the second API to end')).toBe('complete');
      for (const stream of [overSse, overWs]) {
        const seen = states(stream);
        expectOrdered(seen);
        expect(seen[0].status).toBe('CREATED');
        expect(seen.map((s) => s.status)).toContain('RUNNING');
        expect(seen.at(-1)).toMatchObject({ status: 'DONE', progress: 1, result: { width: 1200 } });
      }
      await dashboard.waitFor(isDone(id, 'tasksUpdated'));
      expectOrdered(states(dashboard, 'tasksUpdated'));
      dashboard.stop();
    } finally {
      overSse.close();
      await ws.dispose();
    }
  });
});

describe('single-connection SSE mode across two API processes (a balancer without sticky sessions)', () => {
  it("graphql-sse's client: the stream on the second, every operation POSTed to the first; the whole life arrives", async () => {
    const id = await createTask(viaFirst, big, { width: 1200, format: 'PNG' });
    const sent: string[] = [];
    // What a round-robin balancer could do: the reservation and the stream to one process, the operations to the other.
    const sseClient = createSseClient({
      url: `${second.url}/graphql`,
      headers: { authorization: `Bearer ${key}` },
      singleConnection: true,
      retryAttempts: 0,
      fetchFn: (input: RequestInfo | URL, init?: RequestInit) => {
        const method = init?.method ?? 'GET';
        const url = method === 'POST' || method === 'DELETE' ? String(input).replace(second.url, first.url) : String(input);
        sent.push(`${method} ${url.startsWith(first.url) ? 'first' : 'second'}`);
        return fetch(url, init);
      },
    });
    try {
      const seen: State[] = [];
      const ended = new Promise<void>((resolve, reject) => {
        sseClient.subscribe<{ taskUpdated: State }>(
          { query: print(WatchTask), variables: { id } },
          { next: (r) => r.data && seen.push(r.data.taskUpdated), error: reject, complete: resolve },
        );
      });
      await until(async () => seen.length, (n) => n > 0, 20_000, 20);
      const run = await new Promise<{ data?: unknown }>((resolve, reject) => {
        let result: { data?: unknown };
        sseClient.subscribe({ query: print(RunTask), variables: { id } }, { next: (r) => (result = r), error: reject, complete: () => resolve(result) });
      });
      expect(run.data).toEqual({ runTask: { __typename: 'Task', id, status: 'QUEUED' } });
      await within(ended, 60_000, 'the subscription to complete after DONE');
      expectOrdered(seen);
      expect(seen[0].status).toBe('CREATED');
      expect(seen.at(-1)).toMatchObject({ status: 'DONE', progress: 1, result: { width: 1200 } });
      expect(sent.filter((r) => r.startsWith('POST'))).toEqual(['POST first', 'POST first']);
      expect(sent.filter((r) => r.startsWith('PUT') || r.startsWith('GET'))).toEqual(['PUT second', 'GET second']);
    } finally {
      sseClient.dispose();
    }
  });

  it('a DELETE sent to the first stops the operation running on the second; with the stream gone, both answer 404', async () => {
    const token = await (await reserveStream(first.url, key)).text(); // reserved on one, opened on the other
    const stream = await singleConnection(second.url, token, { key });
    try {
      expect(stream.status).toBe(200);
      const id = await createTask(viaFirst, small, { width: 8 });
      expect((await stream.start('stopped', WatchTask, { id }, first.url)).status).toBe(202);
      expect((await stream.start('kept', WatchTask, { id }, first.url)).status).toBe(202);
      await Promise.all([stream.waitFor('stopped', () => true), stream.waitFor('kept', () => true)]);
      expect((await stream.stop('stopped', first.url)).status).toBe(200);
      // The kept one sees the task's end; the stopped one had nothing more, not even its `complete`.
      const running = await viaFirst.request(RunTask, { id });
      expect(running.data?.runTask).toMatchObject({ status: 'QUEUED' });
      await stream.waitForComplete('kept');
      expect(states({ results: stream.results('kept') }).at(-1)).toMatchObject({ status: 'DONE' });
      expect(stream.results('stopped')).toHaveLength(1);
      expect(stream.completed('stopped')).toBe(false);
    } finally {
      stream.close();
    }
    await stream.ended;
    await until(() => stream.start('late', WatchTasks, {}, first.url).then((r) => r.status), (status) => status === 404, 10_000);
    expect((await stream.start('late', WatchTasks, {}, second.url)).status).toBe(404);
  });

  it('cut off Redis, a process opens no stream (503, Retry-After: the client tries again); once Redis is back it does', async () => {
    try {
      proxy.cut();
      const reserved = await reserveStream(second.url, key); // the key's rate limit is let through while Redis is away
      expect(reserved.status).toBe(201);
      const refused = await singleConnection(second.url, await reserved.text(), { key });
      expect([refused.status, refused.headers.get('retry-after')]).toEqual([503, '5']);
      expect(JSON.parse(refused.body).errors[0].extensions.code).toBe('SERVICE_UNAVAILABLE');
    } finally {
      proxy.unblock();
    }
    const opened = await until(
      async () => singleConnection(second.url, await (await reserveStream(second.url, key)).text(), { key }),
      (stream) => stream.status === 200,
      30_000,
      200,
    );
    try {
      expect((await opened.start('q', '{ __typename }', {}, first.url)).status).toBe(202);
      await opened.waitForComplete('q');
      expect(opened.results('q')).toEqual([{ data: { __typename: 'Query' } }]);
    } finally {
      opened.close();
    }
  });
});

describe('the subscriber connection cut', () => {
  it('CLIENT KILL mid-stream: it reconnects, resubscribes, and the final state still arrives (SSE in both modes, WebSocket)', async () => {
    const id = await createTask(viaFirst, big, { width: 2400, format: 'PNG' });
    const overSse = await sse(second.url, WatchTask, { id }, { key });
    const ws = wsClient(second.url, key);
    // Single-connection mode too, its operations sent through the first (forwarded over Redis).
    const single = await singleConnection(second.url, await (await reserveStream(second.url, key)).text(), { key });
    try {
      const overWs = wsSubscribe(ws, WatchTask, { id });
      expect((await single.start('watch', WatchTask, { id }, first.url)).status).toBe(202);
      await Promise.all([overSse.waitFor(() => true), overWs.waitFor(() => true), single.waitFor('watch', () => true)]);
      const before = await secondSubscriber();
      expect(before?.sub).toBeGreaterThan(0);

      await viaFirst.request(RunTask, { id });
      await overSse.waitFor((r) => (r.data?.taskUpdated as State).status === 'RUNNING');
      await infra.redis.client('KILL', 'ID', before!.id);
      const killedAt = performance.now();
      const killedAtWall = Date.now();

      await within(overSse.ended, 60_000, 'the SSE stream to end after the cut');
      const sseDoneAt = performance.now();
      expect(await within(overWs.ended, 60_000, 'the WS stream to end after the cut')).toBe('complete');
      await within(single.waitForComplete('watch'), 60_000, 'the single-connection operation to complete after the cut');
      for (const stream of [overSse, overWs, { results: single.results('watch') }]) {
        expectOrdered(states(stream));
        expect(states(stream).at(-1)).toMatchObject({ id, status: 'DONE' });
      }
      // graphql-redis-subscriptions' connection is a new one, subscribed again.
      const after = await until(secondSubscriber, (c) => c !== undefined && c.sub > 0, 10_000);
      expect(after!.id).not.toBe(before!.id);
      // The stream's own channel too: an operation sent through the first still reaches it.
      expect((await single.start('after', WatchTask, { id }, first.url)).status).toBe(202);
      await single.waitForComplete('after');
      expect(states({ results: single.results('after') })).toMatchObject([{ id, status: 'DONE' }]);
      expect(second.output()).toMatch(/pub\/sub connection is back: resynchronising/);
      const resynced = [...second.output().matchAll(/"time":(\d+)[^\n]*pub\/sub connection is back/g)].at(-1)!;
      console.log(
        `MEASURED (CLIENT KILL of the subscriber mid-stream): resubscribed and resynchronised ${Number(resynced[1]) - killedAtWall} ms after the kill; ` +
          `the final state (the task ran on) arrived ${Math.round(sseDoneAt - killedAt)} ms after the kill`,
      );
    } finally {
      overSse.close();
      single.close();
      await ws.dispose();
    }
  });

  it('kept off Redis while the task finishes (its message lost for sure): the final state arrives once the connection is back', async () => {
    await nothingOpen();
    const id = await createTask(viaFirst, small, { width: 16 });
    const overSse = await sse(second.url, WatchTask, { id }, { key });
    const dashboard = await sse(second.url, WatchTasks, {}, { key });
    const ws = wsClient(second.url, key);
    let overWs: WsStream | undefined;
    let onFirst: SseStream | undefined;
    const streams: (SseStream | WsStream)[] = [];
    try {
      overWs = wsSubscribe(ws, WatchTask, { id });
      await Promise.all([overSse.waitFor(() => true), overWs.waitFor(() => true)]);
      streams.push(overSse, overWs);
      // The dashboard has no first event: it listens once the second counts all three.
      await countsReach(second.url, { subscriptions: 3 }, 10_000);
      // The first hears what the second must not: its watch shows the change went through Redis.
      onFirst = await sse(first.url, WatchTask, { id }, { key });
      await onFirst.waitFor(() => true);
      const subscriber = await secondSubscriber();
      expect(subscriber?.sub).toBeGreaterThan(0);

      proxy.block();
      await infra.redis.client('KILL', 'ID', subscriber!.id);
      const cutAt = performance.now();
      // The whole life happens while the second API cannot hear about it.
      await viaFirst.request(RunTask, { id });
      await within(onFirst.ended, 30_000, "the first API's watch to end");
      expect(states(onFirst).at(-1)).toMatchObject({ status: 'DONE' }); // published: the second would have had it by now
      expect(await secondSubscriber()).toBeUndefined(); // really still cut off
      for (const stream of streams) expect(states(stream).map((s) => s.status)).toEqual(['CREATED']);
      expect(dashboard.results).toEqual([]);

      proxy.unblock();
      const backAt = performance.now();
      await within(overSse.ended, 30_000, 'the SSE stream to end once Redis is back');
      const deliveredAt = performance.now();
      expect(await within(overWs.ended, 30_000, 'the WS stream to end once Redis is back')).toBe('complete');
      for (const stream of streams) {
        expectOrdered(states(stream));
        expect(states(stream).map((s) => s.status)).toEqual(['CREATED', 'DONE']);
      }
      // The dashboard catches up too: the task's newest state, once.
      await dashboard.waitFor(isDone(id, 'tasksUpdated'));
      expect(states(dashboard, 'tasksUpdated').filter((s) => s.id === id).map((s) => s.status)).toEqual(['DONE']);
      console.log(
        `MEASURED (subscriber kept off Redis ${Math.round(backAt - cutAt)} ms while the task finished): final state delivered ` +
          `${Math.round(deliveredAt - backAt)} ms after Redis was reachable again (ioredis reconnect backoff, capped at 2 s, + resync re-read)`,
      );

      // Resubscribed for real: a new change reaches the dashboard by its message alone.
      const later = await createTask(viaFirst, small, { width: 8 }, true);
      await dashboard.waitFor(isDone(later, 'tasksUpdated'), 30_000);
    } finally {
      proxy.unblock();
      onFirst?.close();
      overSse.close();
      dashboard.close();
      await ws.dispose();
    }
  });
});

describe('a change message lost while the subscriber stays connected', () => {
  it('still reaches the subscribers, through the periodic re-read (LIVE_RESYNC_INTERVAL_MS)', async () => {
    const third = await startService(infra, { LIVE_RESYNC_INTERVAL_MS: '300' }, SCRIPTS.api);
    const ws = wsClient(third.url, key);
    try {
      await nothingOpen(third);
      const id = await createTask(viaFirst, small, { width: 8 });
      const overSse = await sse(third.url, WatchTask, { id }, { key });
      const overWs = wsSubscribe(ws, WatchTask, { id });
      const dashboard = await sse(third.url, WatchTasks, {}, { key });
      await Promise.all([overSse.waitFor(() => true), overWs.waitFor(() => true)]);
      // The dashboard has no first event: it listens once the third counts all three.
      await countsReach(third.url, { subscriptions: 3 }, 10_000);
      // A change nobody announces: as if its publisher had died between commit and publish.
      await infra.sql(
        `WITH t AS (UPDATE "Task" SET "status" = 'DELETED', "version" = "version" + 1, "updatedAt" = now() WHERE "id" = $1 RETURNING *)
         INSERT INTO "TaskEvent" ("taskId", "status", "message", "version") SELECT "id", "status", 'deleted', "version" FROM t`,
        [id],
      );
      await within(Promise.all([overSse.ended, overWs.ended]), 10_000, 'the unannounced DELETED to end both streams');
      for (const stream of [overSse, overWs]) expect(states(stream).map((s) => s.status)).toEqual(['CREATED', 'DELETED']);
      await dashboard.waitFor((r) => (r.data?.tasksUpdated as State | undefined)?.status === 'DELETED', 10_000);
      dashboard.close();
    } finally {
      await ws.dispose();
      await third.stop();
    }
  });
});
