// Subscriptions as a client sees them: SSE read off a plain fetch (what curl shows) and
// WebSocket through graphql-ws's own client, plus small helpers to watch streams end.
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type ExecutionResult } from 'graphql';
import { createClient, type Client as WsClient } from 'graphql-ws';
import WebSocket from 'ws';
import { until } from './client.ts';
import { scrape } from './prometheus.ts';

export interface SseEvent {
  event: string;
  data: string;
}

export interface SseStream {
  status: number;
  contentType: string | null;
  /** Every event so far (`next`, `complete`, …); comments (keep-alives) are left out. */
  events: SseEvent[];
  /** The `next` payloads so far, parsed. */
  results: ExecutionResult<Record<string, unknown>>[];
  /** Resolves when the server ends the stream (or the response was not a stream). */
  ended: Promise<void>;
  /** Resolves with the first result matching `test` (rejects if the stream ends first). */
  waitFor(test: (result: ExecutionResult<Record<string, unknown>>) => boolean, timeoutMs?: number): Promise<ExecutionResult<Record<string, unknown>>>;
  /** The raw body when the response was not an event stream. */
  body: string;
  close(): void;
}

/** A GraphQL subscription over SSE (POST, Accept: text/event-stream), or GET with `?token=` or `?ticket=` as EventSource does. */
export async function sse<R, V>(
  baseUrl: string,
  document: TypedDocumentNode<R, V> | string,
  variables: V,
  auth: { key?: string | null; token?: string; ticket?: string; method?: 'GET' | 'POST' } = {},
): Promise<SseStream> {
  const query = typeof document === 'string' ? document : print(document);
  const abort = new AbortController();
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (auth.key) headers.authorization = `Bearer ${auth.key}`;
  let response: Response;
  if (auth.method === 'GET' || ((auth.token !== undefined || auth.ticket !== undefined) && auth.method !== 'POST')) {
    const url = new URL(`${baseUrl}/graphql`);
    url.searchParams.set('query', query);
    url.searchParams.set('variables', JSON.stringify(variables));
    if (auth.token !== undefined) url.searchParams.set('token', auth.token);
    if (auth.ticket !== undefined) url.searchParams.set('ticket', auth.ticket);
    response = await fetch(url, { headers, signal: abort.signal });
  } else {
    headers['content-type'] = 'application/json';
    const search = auth.ticket !== undefined ? `?ticket=${encodeURIComponent(auth.ticket)}` : '';
    response = await fetch(`${baseUrl}/graphql${search}`, { method: 'POST', headers, body: JSON.stringify({ query, variables }), signal: abort.signal });
  }
  const contentType = response.headers.get('content-type');
  const stream: SseStream = {
    status: response.status,
    contentType,
    events: [],
    results: [],
    body: '',
    ended: Promise.resolve(),
    waitFor: () => Promise.reject(new Error('not an event stream')),
    close: () => abort.abort(),
  };
  if (!contentType?.startsWith('text/event-stream')) {
    stream.body = await response.text();
    return stream;
  }
  const waiters = new Set<() => void>();
  let finished = false;
  stream.ended = (async () => {
    try {
      await readEvents(response, (event) => {
        stream.events.push(event);
        if (event.event === 'next' || event.event === 'message') stream.results.push(JSON.parse(event.data));
        waiters.forEach((w) => w());
      });
    } catch (error) {
      if (!abort.signal.aborted) throw error;
    } finally {
      finished = true;
      waiters.forEach((w) => w());
    }
  })();
  stream.waitFor = (test, timeoutMs = 60_000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no matching SSE result in ${timeoutMs} ms; got ${JSON.stringify(stream.events)}`));
      }, timeoutMs);
      const check = () => {
        const found = stream.results.find(test);
        if (found || finished) {
          clearTimeout(timer);
          waiters.delete(check);
          if (found) resolve(found);
          else reject(new Error(`SSE stream ended without a matching result; got ${JSON.stringify(stream.events)}`));
        }
      };
      waiters.add(check);
      check();
    });
  return stream;
}

/** Reads an event stream's events (comments, the keep-alives, left out) until it ends. */
async function readEvents(response: Response, onEvent: (event: SseEvent) => void): Promise<void> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const [field, ...rest] = line.split(':');
        const value = rest.join(':').replace(/^ /, '');
        if (field === 'event') event = value;
        if (field === 'data') data.push(value);
      }
      if (data.length === 0 && event === 'message') continue; // keep-alive
      onEvent({ event, data: data.join('\n') });
    }
  }
}

/** `PUT /graphql`: a reservation of the single-connection mode (the token is the body of a 201). */
export async function reserveStream(baseUrl: string, key: string | null, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${baseUrl}/graphql`, { method: 'PUT', headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers } });
}

/** The single event stream of a reservation, and its operations as the protocol sends them. */
export interface SingleConnection {
  token: string;
  status: number;
  /** The raw body when the response was not an event stream. */
  body: string;
  headers: Headers;
  /** Every event so far. */
  events: SseEvent[];
  /** The payloads of operation `id` so far. */
  results(id: string): ExecutionResult<Record<string, unknown>>[];
  /** Whether operation `id` got its `complete`. */
  completed(id: string): boolean;
  /** Resolves with the first payload of `id` matching `test`. */
  waitFor(id: string, test: (result: ExecutionResult<Record<string, unknown>>) => boolean, timeoutMs?: number): Promise<ExecutionResult<Record<string, unknown>>>;
  /** Resolves when `id` completed. */
  waitForComplete(id: string, timeoutMs?: number): Promise<void>;
  /** POSTs operation `id` (to `at`, another API process, if given): the response of the POST. */
  start<R, V>(id: string, document: TypedDocumentNode<R, V> | string, variables: V, at?: string): Promise<Response>;
  /** DELETE ?operationId=`id` (to `at` if given). */
  stop(id: string, at?: string): Promise<Response>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  close(): void;
}

/**
 * Opens the stream of `token` (in the header, or `?token=` as an EventSource would, with
 * no key); `key` goes with the operations (POST, DELETE), as graphql-sse's client sends it.
 */
export async function singleConnection(
  baseUrl: string,
  token: string,
  options: { key?: string | null; tokenIn?: 'header' | 'query'; headers?: Record<string, string> } = {},
): Promise<SingleConnection> {
  const abort = new AbortController();
  const tokenHeader = { 'x-graphql-event-stream-token': token };
  const operationHeaders = { ...tokenHeader, ...(options.key ? { authorization: `Bearer ${options.key}` } : {}) };
  const url = options.tokenIn === 'query' ? `${baseUrl}/graphql?token=${encodeURIComponent(token)}` : `${baseUrl}/graphql`;
  const response = await fetch(url, {
    headers: { accept: 'text/event-stream', ...(options.tokenIn === 'query' ? {} : tokenHeader), ...options.headers },
    signal: abort.signal,
  });
  const events: SseEvent[] = [];
  const payloads = new Map<string, ExecutionResult<Record<string, unknown>>[]>();
  const completed = new Set<string>();
  const waiters = new Set<() => void>();
  let finished = false;
  const streaming = response.headers.get('content-type')?.startsWith('text/event-stream') ?? false;
  const body = streaming ? '' : await response.text();
  const ended = streaming
    ? (async () => {
        try {
          await readEvents(response, (event) => {
            events.push(event);
            const data = JSON.parse(event.data) as { id: string; payload?: ExecutionResult<Record<string, unknown>> };
            if (event.event === 'next') payloads.set(data.id, [...(payloads.get(data.id) ?? []), data.payload!]);
            if (event.event === 'complete') completed.add(data.id);
            waiters.forEach((w) => w());
          });
        } catch (error) {
          if (!abort.signal.aborted) throw error;
        } finally {
          finished = true;
          waiters.forEach((w) => w());
        }
      })()
    : Promise.resolve();
  const until = <T>(what: string, found: () => T | undefined, timeoutMs: number) =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${what}: not within ${timeoutMs} ms; got ${JSON.stringify(events)}`));
      }, timeoutMs);
      const check = () => {
        const value = found();
        if (value !== undefined || finished) {
          clearTimeout(timer);
          waiters.delete(check);
          if (value !== undefined) resolve(value);
          else reject(new Error(`${what}: the stream ended first; got ${JSON.stringify(events)}`));
        }
      };
      waiters.add(check);
      check();
    });
  return {
    token,
    status: response.status,
    body,
    headers: response.headers,
    events,
    results: (id) => payloads.get(id) ?? [],
    completed: (id) => completed.has(id),
    waitFor: (id, test, timeoutMs = 60_000) => until(`a matching result of ${id}`, () => payloads.get(id)?.find(test), timeoutMs),
    waitForComplete: (id, timeoutMs = 60_000) => until(`${id} to complete`, () => (completed.has(id) ? true : undefined), timeoutMs).then(() => {}),
    start: (id, document, variables, at = baseUrl) =>
      fetch(`${at}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...operationHeaders },
        body: JSON.stringify({ query: typeof document === 'string' ? document : print(document), variables, extensions: { operationId: id } }),
      }),
    stop: (id, at = baseUrl) => fetch(`${at}/graphql?operationId=${encodeURIComponent(id)}`, { method: 'DELETE', headers: operationHeaders }),
    ended,
    close: () => abort.abort(),
  };
}

/** graphql-ws's own client over `ws`, authenticated the way the README says. */
export function wsClient(baseUrl: string, key: string | null, options: { retryAttempts?: number } = {}): WsClient & { closed: { code: number; reason: string }[] } {
  const closed: { code: number; reason: string }[] = [];
  const client = createClient({
    url: `${baseUrl.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: key ? { authorization: `Bearer ${key}` } : {},
    retryAttempts: options.retryAttempts ?? 0,
    lazy: true,
    on: { closed: (event) => closed.push({ code: (event as CloseEvent).code, reason: (event as CloseEvent).reason }) },
  });
  return Object.assign(client, { closed });
}

export interface WsStream {
  results: ExecutionResult<Record<string, unknown>>[];
  /** Resolves 'complete', or with the error the client got (GraphQL errors, close event). */
  ended: Promise<'complete' | { error: unknown }>;
  waitFor(test: (result: ExecutionResult<Record<string, unknown>>) => boolean, timeoutMs?: number): Promise<ExecutionResult<Record<string, unknown>>>;
  stop(): void;
}

export function wsSubscribe<R, V>(client: WsClient, document: TypedDocumentNode<R, V> | string, variables: V): WsStream {
  const results: ExecutionResult<Record<string, unknown>>[] = [];
  const waiters = new Set<() => void>();
  let finished = false;
  let stop = () => {};
  const ended = new Promise<'complete' | { error: unknown }>((resolve) => {
    stop = client.subscribe(
      { query: typeof document === 'string' ? document : print(document), variables: variables as Record<string, unknown> },
      {
        next: (result) => {
          results.push(result as ExecutionResult<Record<string, unknown>>);
          waiters.forEach((w) => w());
        },
        error: (error) => resolve({ error }),
        complete: () => resolve('complete'),
      },
    );
  }).finally(() => {
    finished = true;
    waiters.forEach((w) => w());
  });
  return {
    results,
    ended,
    stop: () => stop(),
    waitFor: (test, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching WS result in ${timeoutMs} ms; got ${JSON.stringify(results)}`));
        }, timeoutMs);
        const check = () => {
          const found = results.find(test);
          if (found || finished) {
            clearTimeout(timer);
            waiters.delete(check);
            if (found) resolve(found);
            else reject(new Error(`WS stream ended without a matching result; got ${JSON.stringify(results)}`));
          }
        };
        waiters.add(check);
        check();
      }),
  };
}

/** Resolves with `promise`'s value, or rejects after `ms` naming `what`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]);
}

export interface LiveCounts {
  /** Source streams open (identical subscriptions of one owner share one). */
  streams: number;
  /** Open subscriptions: each counted once its resolver returned, i.e. once it listens on Redis. */
  subscriptions: number;
}

/**
 * The deployment's live counts as the API at `baseUrl` sees them: its own, live, plus every
 * other process's latest snapshot (pushed every METRICS_PUSH_INTERVAL_MS). So a count is
 * exact for the subscriptions on that API, and for another API's only once it has pushed.
 */
export async function liveCounts(baseUrl: string): Promise<LiveCounts> {
  const metrics = await scrape(baseUrl);
  return { streams: metrics.sum('tasklane_subscription_streams'), subscriptions: metrics.sum('tasklane_active_subscriptions') };
}

/** What every test leaves once its clients are gone: no subscription, no stream. */
export const NOTHING_OPEN: LiveCounts = { streams: 0, subscriptions: 0 };

/**
 * Waits until the live counts seen at `baseUrl` are `expected` (the counts it names). The
 * API sees a client leave when its connection closes, so an earlier test's streams may
 * still be closing when the next one starts.
 */
export function countsReach(baseUrl: string, expected: Partial<LiveCounts>, timeoutMs = 30_000): Promise<LiveCounts> {
  const names = Object.keys(expected) as (keyof LiveCounts)[];
  return until(() => liveCounts(baseUrl), (counts) => names.every((name) => counts[name] === expected[name]), timeoutMs);
}

type TaskState = { status: string; version: number; progress: number };

/**
 * What every taskUpdated stream must satisfy: versions strictly increase (no duplicate,
 * nothing older), statuses only move forward along the lifecycle.
 */
export function expectOrdered(states: TaskState[]): void {
  const rank: Record<string, number> = { CREATED: 0, QUEUED: 1, RUNNING: 2, DONE: 3, FAILED: 3, DELETED: 4 };
  for (let i = 1; i < states.length; i++) {
    if (!(states[i].version > states[i - 1].version)) throw new Error(`version did not increase at ${i}: ${JSON.stringify(states)}`);
    if (rank[states[i].status] < rank[states[i - 1].status]) throw new Error(`status went back at ${i}: ${JSON.stringify(states)}`);
  }
}
