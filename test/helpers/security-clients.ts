// Subscriptions and raw HTTP as an attacker (or a dashboard) would use them: SSE read
// off a fetch body, WebSocket through graphql-ws, request bodies written by hand.
import http from 'node:http';
import { createClient as createSseClient } from 'graphql-sse';
import { createClient, type Client as WsClient } from 'graphql-ws';
import WebSocket from 'ws';

export interface GraphQLMessage {
  data?: unknown;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

export interface Stream {
  /** Every message so far. */
  messages: GraphQLMessage[];
  /** Resolves when the stream has ended (completed, errored or closed by the server). */
  ended: Promise<void>;
  /** Resolves with the first message (from the start) matching `match`. */
  waitFor(match: (message: GraphQLMessage) => boolean, timeoutMs?: number): Promise<GraphQLMessage>;
  close(): void;
}

function collector() {
  const messages: GraphQLMessage[] = [];
  const waiters: { match: (m: GraphQLMessage) => boolean; resolve: (m: GraphQLMessage) => void }[] = [];
  return {
    messages,
    push(message: GraphQLMessage) {
      messages.push(message);
      for (const waiter of [...waiters]) {
        if (waiter.match(message)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(message);
        }
      }
    },
    waitFor(match: (m: GraphQLMessage) => boolean, timeoutMs = 30_000): Promise<GraphQLMessage> {
      const found = messages.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching message in ${timeoutMs} ms; got ${JSON.stringify(messages)}`)), timeoutMs);
        waiters.push({
          match,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
      });
    },
  };
}

/** A subscription over Server-Sent Events (yoga's default transport). */
export async function sse(url: string, key: string, query: string, variables: Record<string, unknown> = {}): Promise<Stream & { status: number }> {
  const abort = new AbortController();
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query, variables }),
    signal: abort.signal,
  });
  const c = collector();
  const ended = (async () => {
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const name = /^event: (.*)$/m.exec(event)?.[1];
          const data = /^data: (.*)$/m.exec(event)?.[1];
          if (name === 'complete') return;
          if (data) c.push(JSON.parse(data));
        }
      }
    } catch {
      // aborted by close()
    }
  })();
  return { status: response.status, messages: c.messages, ended, waitFor: c.waitFor, close: () => abort.abort() };
}

/**
 * A subscription through graphql-sse's client in single-connection mode (reservation, one
 * stream, the operation POSTed). A refused request (401, 429) becomes one message `refused: <status>`.
 */
export function sseSingle(url: string, key: string, query: string, variables: Record<string, unknown> = {}): Stream {
  const client = createSseClient({ url: `${url}/graphql`, headers: { authorization: `Bearer ${key}` }, singleConnection: true, retryAttempts: 0 });
  const c = collector();
  let resolveEnded!: () => void;
  const ended = new Promise<void>((resolve) => (resolveEnded = resolve));
  const dispose = client.subscribe(
    { query, variables },
    {
      next: (message) => c.push(message as GraphQLMessage),
      error: (error) => {
        const status = (error as { response?: { status?: number } }).response?.status;
        c.push({ errors: [{ message: status ? `refused: ${status}` : String(error) }] });
        resolveEnded();
      },
      complete: () => resolveEnded(),
    },
  );
  return {
    messages: c.messages,
    ended,
    waitFor: c.waitFor,
    close: () => {
      dispose();
      client.dispose();
    },
  };
}

/** A subscription over WebSocket (graphql-transport-ws). Errors before the stream become one message. */
export function ws(url: string, key: string, query: string, variables: Record<string, unknown> = {}): Stream & { client: WsClient } {
  const client = createClient({
    url: `${url.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${key}` },
    retryAttempts: 0,
    lazy: true,
  });
  const c = collector();
  let resolveEnded!: () => void;
  const ended = new Promise<void>((resolve) => (resolveEnded = resolve));
  const dispose = client.subscribe(
    { query, variables },
    {
      next: (message) => c.push(message as GraphQLMessage),
      error: (error) => {
        // graphql-ws hands pre-stream GraphQL errors over as an array; a close as a CloseEvent.
        if (Array.isArray(error)) c.push({ errors: error });
        else c.push({ errors: [{ message: `closed: ${(error as { code?: number }).code ?? String(error)}` }] });
        resolveEnded();
      },
      complete: () => resolveEnded(),
    },
  );
  return {
    client,
    messages: c.messages,
    ended,
    waitFor: c.waitFor,
    close: () => {
      dispose();
      void client.dispose();
    },
  };
}

/**
 * POSTs to `url` (a full URL) a body written chunk by chunk (chunked transfer encoding
 * unless a Content-Length header is given), and stops writing as soon as the server
 * answers. `sent` is what was written.
 */
export function postChunks(
  url: string,
  headers: Record<string, string>,
  chunks: Iterable<Uint8Array>,
): Promise<{ status: number; body: string; sent: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = false;
    // A connection of its own: one answered before its body was read is closed by the server
    // shortly after (server.ts), and must not be reused for the next request.
    const request = http.request(url, { method: 'POST', headers, agent: false }, (response) => {
      answered = true;
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (text) => (body += text));
      response.on('end', () => resolve({ status: response.statusCode!, body, sent, headers: response.headers }));
    });
    // The server may close while we still write: that is the point, not a failure.
    request.on('error', (error) => {
      if (!answered) setTimeout(() => !answered && reject(error), 2000);
    });
    const iterator = chunks[Symbol.iterator]();
    const pump = () => {
      while (!answered) {
        const next = iterator.next();
        if (next.done) return request.end();
        sent += next.value.byteLength;
        if (!request.write(next.value)) return request.once('drain', pump);
      }
    };
    pump();
  });
}
