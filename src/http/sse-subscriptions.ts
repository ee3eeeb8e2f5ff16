// Subscriptions over SSE, served straight on node:http. Through yoga, every open SSE stream
// kept a web Request and Response, a ReadableStream, a node stream pipeline and their
// closures alive (about 30 KB of heap each, measured with a heap snapshot), and every event
// went through that chain. Here a stream is the node response and one loop, and the bytes
// of an event are made once for all subscribers of a shared stream
// (src/http/shared-subscriptions.ts).
//
// Only the common case is served here: a well-formed subscription of an authenticated
// caller that the rate limit lets through and that subscribes. Anything else — a query over
// SSE, a bad document, a refused key, a refused subscription — goes to yoga with the body
// already read, and yoga answers exactly as it always has. The same yoga plugins run here
// (getEnveloped: parse and validation limits, context, masking, metrics, sharing); the
// protocol is yoga's "distinct connections" SSE: a `:` ping first and every 12 s,
// `event: next` per result, `event: complete` at the end.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { getOperationAST, GraphQLError, type DocumentNode, type ExecutionResult } from 'graphql';
import { config } from '../config.ts';
import type { Context } from '../graphql/builder.ts';
import { httpDuration } from '../metrics.ts';
import { graphqlRefusal, rateLimit } from './edge.ts';
import { maskError } from './errors.ts';
import { isAsyncIterable } from './shared-subscriptions.ts';
import { yoga } from './yoga.ts';

/** A subscription request is a query and variables: a larger body is not one of ours (nor over MAX_REQUEST_BYTES). */
export const MAX_BODY_BYTES = Math.min(64 * 1024, config.maxRequestBytes);
export const PING_INTERVAL_MS = 12_000;
export const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  connection: 'keep-alive',
  'cache-control': 'no-cache',
  'content-encoding': 'none',
};

/** Open streams (of both modes), so that shutdown can end them. */
const open = new Set<() => void>();

/** Registers a stream's `shutdown` (ends it without `complete`); returns its removal. */
export function trackOpen(shutdown: () => void): () => void {
  open.add(shutdown);
  return () => open.delete(shutdown);
}

/** Whether `request` may be an SSE subscription (decided from its head; the body decides the rest). */
export function maybeSseSubscription(request: IncomingMessage): boolean {
  const url = request.url ?? '';
  const path = url.split('?', 1)[0];
  if (path !== yoga.graphqlEndpoint || !request.headers.accept?.includes('text/event-stream')) return false;
  if (request.method === 'GET') return true;
  if (request.method !== 'POST' || !request.headers['content-type']?.startsWith('application/json')) return false;
  const length = Number(request.headers['content-length']);
  return Number.isInteger(length) && length > 0 && length <= MAX_BODY_BYTES;
}

interface Params {
  query?: unknown;
  variables?: unknown;
  operationName?: unknown;
}

/**
 * Serves an SSE subscription, or hands the request to `fallback` (yoga), the body (if it
 * read one) left on `request.body`, where yoga's server adapter takes it from.
 */
export async function serveSseSubscription(request: IncomingMessage, response: ServerResponse, fallback: () => void): Promise<void> {
  const startedAt = performance.now();
  const url = new URL(request.url ?? '/', 'http://localhost');
  let params: Params;
  try {
    if (request.method === 'POST') {
      const body = await readBody(request);
      (request as IncomingMessage & { body?: Buffer }).body = body;
      params = JSON.parse(body.toString('utf8')) as Params;
    } else {
      const variables = url.searchParams.get('variables');
      params = {
        query: url.searchParams.get('query'),
        variables: variables ? JSON.parse(variables) : undefined,
        operationName: url.searchParams.get('operationName') ?? undefined,
      };
    }
  } catch {
    if (request.destroyed) return; // nobody to answer
    return fallback();
  }
  const { query, variables, operationName } = params ?? {};
  if (typeof query !== 'string' || (variables != null && typeof variables !== 'object') || (operationName != null && typeof operationName !== 'string')) {
    return fallback();
  }

  // What yoga's plugins see of the request: its URL (`?token=`, `?ticket=`), its key, its Accept (a ticket wants an event stream).
  const headers: Record<string, string> = {};
  if (request.headers.authorization) headers.authorization = request.headers.authorization;
  if (request.headers.accept) headers.accept = request.headers.accept;
  const { schema, parse, validate, contextFactory, subscribe } = yoga.getEnveloped({
    request: new Request(url, { method: request.method, headers }),
    params: { query, variables, operationName },
  });
  let document: DocumentNode;
  let contextValue: Context;
  try {
    document = parse(query);
    if (getOperationAST(document, operationName as string | undefined)?.operation !== 'subscription') return fallback();
    if (validate(schema, document).length) return fallback();
    contextValue = (await contextFactory()) as Context;
  } catch {
    return fallback(); // a syntax error, a refused key, PostgreSQL down: yoga says so
  }

  // Counted once for this request: if it falls back to yoga from here on, yoga's plugin gets the same answer uncounted.
  const refusal = await rateLimit(contextValue.caller, request);
  if (refusal) return send(response, graphqlRefusal(refusal));

  let result: unknown;
  try {
    result = await subscribe({
      schema,
      document,
      operationName: operationName as string | undefined,
      variableValues: variables as Record<string, unknown> | undefined,
      contextValue,
    });
  } catch {
    return fallback();
  }
  if (!isAsyncIterable(result)) return fallback(); // refused (bad id, no such task): yoga refuses it again, the same way
  await stream(response, result[Symbol.asyncIterator](), startedAt);
}

async function stream(response: ServerResponse, iterator: AsyncIterator<ExecutionResult>, startedAt: number) {
  // The client may have gone while we subscribed: its 'close' has fired already, so let go now.
  if (response.destroyed || !response.socket || response.socket.destroyed) {
    await Promise.resolve(iterator.return?.()).catch(() => {});
    return;
  }
  response.socket.setNoDelay(true);
  response.writeHead(200, { ...SSE_HEADERS, ...corsHeaders(response.req.headers.origin) });
  // A first ping: some clients wait for a byte before they report the stream open.
  response.write(':\n\n');
  httpDuration.observe({ method: response.req.method ?? 'GET', route: yoga.graphqlEndpoint, status: '200' }, (performance.now() - startedAt) / 1000);

  let closed = false;
  let wakeWriter: (() => void) | null = null;
  const stop = () => {
    if (closed) return;
    closed = true;
    wakeWriter?.();
    void Promise.resolve(iterator.return?.()).catch(() => {});
  };
  response.once('close', stop);
  const ping = setInterval(() => !response.writableNeedDrain && response.write(':\n\n'), PING_INTERVAL_MS);
  // Shutdown ends the stream without `complete`: the client reconnects to another process.
  const shutdown = () => {
    stop();
    response.end();
  };
  const untrack = trackOpen(shutdown);
  try {
    for (;;) {
      const step = await iterator.next();
      if (closed) break;
      if (step.value != null && !response.write(eventOf(step.value))) {
        // A client that does not read: wait for it (its subscription holds what comes meanwhile, within limits).
        await new Promise<void>((resolve) => {
          wakeWriter = resolve;
          response.once('drain', resolve);
        });
        wakeWriter = null;
        if (closed) break;
      }
      if (step.done) {
        response.end('event: complete\ndata:\n\n');
        break;
      }
    }
  } catch (error) {
    // As yoga does: a failing stream (e.g. the key revoked) ends with its error, masked, as one last event.
    if (!closed) response.end(`${eventOf(failureResult(error))}event: complete\ndata:\n\n`);
  } finally {
    clearInterval(ping);
    untrack();
    response.off('close', stop);
  }
}

/** The last result of a stream that failed (e.g. the key revoked): its error, masked. */
export function failureResult(error: unknown): ExecutionResult {
  const masked = maskError(error, 'Unexpected error.');
  return { errors: [masked instanceof GraphQLError ? masked : new GraphQLError(masked.message, { originalError: masked })] };
}

// One serialisation per result: subscribers of a shared stream receive the same object.
const serialized = new WeakMap<object, string>();
/** A result as JSON, as yoga would send it; made once per result object. */
export function resultJson(result: ExecutionResult): string {
  let json = serialized.get(result);
  if (json === undefined) {
    json = JSON.stringify(withoutInternals(result));
    serialized.set(result, json);
  }
  return json;
}

function eventOf(result: ExecutionResult): string {
  return `event: next\ndata: ${resultJson(result)}\n\n`;
}

/** As yoga serialises a result: no `http` (or `unexpected`) in the error extensions, nor `http` in the result's. */
function withoutInternals(result: ExecutionResult): ExecutionResult {
  const extensions = result.extensions as Record<string, unknown> | undefined;
  if (!result.errors?.length && !extensions?.http) return result;
  const errors = result.errors?.map((error) => {
    const json = (error instanceof GraphQLError ? error.toJSON() : error) as ReturnType<GraphQLError['toJSON']>;
    const { http: _http, unexpected: _unexpected, ...rest } = (json.extensions ?? {}) as Record<string, unknown>;
    return { ...json, extensions: Object.keys(rest).length ? rest : undefined };
  });
  const { http: _http, ...otherExtensions } = extensions ?? {};
  return { ...result, errors: errors as never, extensions: Object.keys(otherExtensions).length ? otherExtensions : undefined };
}

/**
 * What yoga adds to every response with its default CORS settings (ours): the caller's
 * origin reflected, with credentials. A browser app on another origin can subscribe too.
 */
export function corsHeaders(origin: string | undefined): Record<string, string> {
  return origin ? { 'access-control-allow-origin': origin, vary: 'Origin', 'access-control-allow-credentials': 'true' } : {};
}

/** Ends every open SSE stream of this module (shutdown). */
export function closeSseStreams() {
  for (const shutdown of [...open]) shutdown();
}

/** The body of `request`; rejects with BodyTooLarge past `limit` bytes. */
export function readBody(request: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        request.removeAllListeners('data');
        request.pause();
        reject(new BodyTooLarge());
      } else chunks.push(chunk);
    });
    request.once('end', () => resolve(Buffer.concat(chunks)));
    request.once('error', reject);
    // A client gone before its body ended: no 'end' will come (after 'end' this is a no-op).
    request.once('close', () => reject(new Error('the client went away')));
  });
}

export class BodyTooLarge extends Error {
  override name = 'BodyTooLarge';
}

/** Writes a web Response (a small, complete one) to the node response. */
export async function send(response: ServerResponse, web: Response) {
  response.writeHead(web.status, Object.fromEntries(web.headers));
  response.end(Buffer.from(await web.arrayBuffer()));
}

