// An answer sent before its request's body was read (here a 413 for a declared Content-Length
// over MAX_REQUEST_BYTES) leaves the client still sending. Node keeps such a keep-alive
// connection: it reads and discards the rest of the body and serves the next request on it.
// src/http/server.ts cuts the connection at the end of a linger only if that body is still
// coming; a connection whose body did end must survive the linger for the client's next
// requests. The API server of this process, on port 0; the linger's timer runs on vitest's
// fake clock, so the test moves past its end without waiting for it.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { TestInfra } from './helpers/infra.ts';
import { inProcess } from './helpers/in-process.ts';

const MAX_REQUEST_BYTES = 1024;
/** UNREAD_BODY_LINGER_MS in src/http/server.ts, and a margin. */
const PAST_THE_LINGER_MS = 5000 + 1000;

let infra: TestInfra;
let dispose: () => Promise<void>;
let api: import('../src/http/server.ts').ApiServer;

beforeAll(async () => {
  ({ infra, dispose } = await inProcess('keepalive', { MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES) }));
  const { startApiServer } = await import('../src/http/server.ts');
  api = await startApiServer(0, '127.0.0.1');
});

afterAll(async () => {
  vi.useRealTimers();
  await api?.close(1000);
  await dispose?.();
});

/** A raw HTTP/1.1 connection that hands out the responses it reads, one by one, in order. */
function connection(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  let buffered = Buffer.alloc(0);
  let closed = false;
  const waiting: (() => void)[] = [];
  const wakeAll = () => waiting.splice(0).forEach((wake) => wake());
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    wakeAll();
  });
  socket.on('close', () => {
    closed = true;
    wakeAll();
  });
  socket.on('error', () => {}); // seen as 'close'
  /** The body of a response starting at `at` (after its head), and where it ends; null while incomplete. */
  function bodyAt(head: string, at: number): { body: string; end: number } | null {
    if (!/^transfer-encoding:\s*chunked/im.test(head)) {
      const length = Number(/^content-length:\s*(\d+)/im.exec(head)?.[1] ?? 0);
      return buffered.length >= at + length ? { body: buffered.subarray(at, at + length).toString(), end: at + length } : null;
    }
    let body = '';
    for (;;) {
      const line = buffered.indexOf('\r\n', at);
      if (line < 0) return null;
      const size = parseInt(buffered.subarray(at, line).toString(), 16);
      if (buffered.length < line + 2 + size + 2) return null;
      body += buffered.subarray(line + 2, line + 2 + size).toString();
      at = line + 2 + size + 2;
      if (size === 0) return { body, end: at };
    }
  }
  /** The next whole response, or null if the server closed the connection first. */
  async function response(): Promise<{ status: number; headers: string; body: string } | null> {
    for (;;) {
      const headEnd = buffered.indexOf('\r\n\r\n');
      if (headEnd >= 0) {
        const head = buffered.subarray(0, headEnd).toString();
        const whole = bodyAt(head, headEnd + 4);
        if (whole) {
          buffered = buffered.subarray(whole.end);
          return { status: Number(head.split(' ')[1]), headers: head, body: whole.body };
        }
      }
      if (closed) return null;
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
  }
  return { socket, response };
}

const health = 'GET /health HTTP/1.1\r\nHost: test\r\n\r\n';
/** The body the refused request declares: over MAX_REQUEST_BYTES. */
const DECLARED = 2 * MAX_REQUEST_BYTES;

/**
 * A connection whose first request (headers only, declaring DECLARED bytes of body) was
 * refused with 413 before any of its body was sent. The fake clock runs from before the
 * request, so the linger's timer is on it; `test` runs with the connection, then both end.
 */
async function refusedEarly(test: (conn: ReturnType<typeof connection>) => Promise<void>) {
  const key = await infra.createKey('early');
  const conn = connection(api.port);
  await new Promise<void>((resolve) => conn.socket.once('connect', resolve));
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  try {
    conn.socket.write(
      `POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nAuthorization: Bearer ${key}\r\n` +
        `Content-Length: ${DECLARED}\r\n\r\n`,
    );
    const refused = await conn.response();
    expect(refused?.status).toBe(413);
    expect(refused?.headers).not.toMatch(/^connection: close/im);
    await test(conn);
  } finally {
    vi.useRealTimers();
    conn.socket.destroy();
  }
}

describe('an answer sent before the body was read', () => {
  it('keeps a keep-alive connection whose body did end usable past the linger', () =>
    refusedEarly(async ({ socket, response }) => {
      // The rest of the body, then a next request: its answer means the body was read to its end.
      socket.write('x'.repeat(DECLARED));
      socket.write(health);
      expect((await response())?.status).toBe(200);
      vi.advanceTimersByTime(PAST_THE_LINGER_MS);
      socket.write(health);
      expect((await response())?.status, 'the connection was cut at the end of the linger').toBe(200);
    }));

  it('cuts a connection whose body is still coming at the end of the linger', () =>
    refusedEarly(async ({ socket, response }) => {
      socket.write('x'.repeat(DECLARED / 2)); // and never the rest
      vi.advanceTimersByTime(PAST_THE_LINGER_MS);
      expect(await response(), 'the connection was closed').toBeNull();
    }));
});
