// The per-key rate limit (src/http/edge.ts) in-process: the API server of this process on
// port 0 (no child processes), real PostgreSQL and Redis, RATE_LIMIT_PER_MINUTE=1 so each
// fresh key has exactly one request before it is refused (the next is allowed a minute
// later). What counts, and how often: a request is counted once whichever paths it takes;
// the refusal's wire format on each surface. test/security.e2e.test.ts and
// test/rest.e2e.test.ts check the limit across two real API processes.
import { randomUUID } from 'node:crypto';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { TestInfra } from './helpers/infra.ts';
import { inProcess } from './helpers/in-process.ts';
import { reserveStream, sse, wsSubscribe } from './helpers/live.ts';

let infra: TestInfra;
let dispose: () => Promise<void>;
let api: import('../src/http/server.ts').ApiServer;
let url: string;

beforeAll(async () => {
  ({ infra, dispose } = await inProcess('ratelimit', { RATE_LIMIT_PER_MINUTE: '1' }));
  const { startApiServer } = await import('../src/http/server.ts');
  api = await startApiServer(0, '127.0.0.1');
  url = `http://127.0.0.1:${api.port}`;
});

afterAll(async () => {
  await api?.close(1000);
  await dispose?.();
});

const QUERY = '{ __typename }';

const query = (key: string) =>
  fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ query: QUERY }) });

/** The 429 every GraphQL surface answers over HTTP, whole. */
async function expectGraphqlRefusal(response: Response) {
  expect(response.status).toBe(429);
  const retryAfter = Number(response.headers.get('retry-after'));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(60);
  expect(response.headers.get('content-type')).toBe('application/json');
  expect(await response.json()).toEqual({
    errors: [
      {
        message: `rate limit of 1 requests per minute per key (RATE_LIMIT_PER_MINUTE) reached; retry after ${retryAfter} s`,
        extensions: { code: 'RATE_LIMITED', retryAfter },
      },
    ],
  });
}

describe('a request is counted once, whichever paths it takes', () => {
  it('an SSE subscription refused after it was counted falls back to yoga, which does not count it again', async () => {
    const key = await infra.createKey('fallback');
    // A task that does not exist: sse-subscriptions.ts counts the request, its subscribe is
    // refused, and yoga answers it (its rate-limit plugin runs again on the same request).
    const stream = await sse(url, 'subscription ($id: ID!) { taskUpdated(id: $id) { id } }', { id: randomUUID() }, { key, method: 'GET' });
    await stream.ended;
    expect(stream.status).toBe(200);
    expect(stream.results).toMatchObject([{ errors: [{ extensions: { code: 'TASK_DOES_NOT_EXIST' } }] }]);
    // It was counted: the key's one request of the minute is gone.
    await expectGraphqlRefusal(await query(key));
  });

  it('every operation over one WebSocket counts (they share the socket, not a decision)', async () => {
    const key = await infra.createKey('socket');
    // Not lazy: both operations go over the one socket (a lazy client would reconnect for the second).
    const client = createClient({ url: `${url.replace(/^http/, 'ws')}/graphql`, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${key}` }, lazy: false, retryAttempts: 0 });
    try {
      const first = wsSubscribe(client, QUERY, {});
      expect(await first.ended).toBe('complete');
      expect(first.results).toEqual([{ data: { __typename: 'Query' } }]);
      const second = wsSubscribe(client, QUERY, {});
      const ended = (await second.ended) as { error: { message: string; extensions: { retryAfter: number } }[] };
      const retryAfter = ended.error[0].extensions.retryAfter;
      expect(ended.error).toEqual([
        {
          message: `rate limit of 1 requests per minute per key (RATE_LIMIT_PER_MINUTE) reached; retry after ${retryAfter} s`,
          extensions: { code: 'RATE_LIMITED', retryAfter },
        },
      ]);
    } finally {
      await client.dispose();
    }
  });
});

describe('what counts, and the refusal on each surface', () => {
  it('GraphQL over HTTP: 429 RATE_LIMITED with Retry-After, per key name; without a valid key, 401', async () => {
    const key = await infra.createKey('graphql');
    expect((await query(key)).status).toBe(200);
    await expectGraphqlRefusal(await query(key));
    // Another key is not affected; a request without a valid key is not the limit's to refuse.
    expect((await query(await infra.createKey('graphql-other'))).status).toBe(200);
    expect((await query('not-a-key')).status).toBe(401);
  });

  it('REST: 429 problem RateLimited with retryAfter and Retry-After', async () => {
    const key = await infra.createKey('rest');
    const get = () => fetch(`${url}/api/tasks/${randomUUID()}`, { headers: { authorization: `Bearer ${key}` } });
    expect((await get()).status).toBe(404);
    const refused = await get();
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(await refused.json()).toEqual({
      error: 'RateLimited',
      message: `rate limit of 1 requests per minute per key (RATE_LIMIT_PER_MINUTE) reached; retry after ${retryAfter} s`,
      retryAfter,
    });
  });

  it("single-connection SSE: the reservation counts, a DELETE does not; an upload's PUT is not limited", async () => {
    const key = await infra.createKey('single');
    const reserved = await reserveStream(url, key);
    expect(reserved.status).toBe(201);
    const token = await reserved.text();
    await expectGraphqlRefusal(await reserveStream(url, key));
    // Over the limit, a DELETE is still answered (no stream is open for this reservation: 404).
    const stop = await fetch(`${url}/graphql?operationId=op`, { method: 'DELETE', headers: { authorization: `Bearer ${key}`, 'x-graphql-event-stream-token': token } });
    expect(stop.status).toBe(404);
    // An upload URL's PUT is checked by its signature only, whatever key comes with it.
    const upload = await fetch(`${url}/uploads/${randomUUID()}?exp=1&sig=x`, { method: 'PUT', headers: { authorization: `Bearer ${key}`, 'content-type': 'image/png' }, body: 'x' });
    expect(upload.status).not.toBe(429);
    expect((await upload.json()).error).toMatch(/^(InvalidSignature|UploadExpired|UploadDoesNotExist)$/);
  });
});
