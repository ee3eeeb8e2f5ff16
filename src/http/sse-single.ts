// The single-connection mode of the GraphQL over SSE protocol (graphql-sse's
// `createClient({ singleConnection: true })`), beside the distinct-connections mode of
// sse-subscriptions.ts, on the same /graphql:
//
//   PUT    /graphql (with a key)                    → 201, a reservation token (text/plain)
//   GET    /graphql, Accept: text/event-stream, token → the one event stream of that reservation
//   POST   /graphql, token + key, {query, variables, operationName, extensions: {operationId}}
//          → 202; the results go to the stream as `event: next` `data: {"id", "payload"}`,
//            then `event: complete` `data: {"id"}`
//   DELETE /graphql?operationId=…, token + key      → 200; that operation stops
//
// The token comes in the X-GraphQL-Event-Stream-Token header, or as `?token=` (an
// EventSource cannot send headers). `?token=` is also where an API key may be given; a
// reservation is told apart by its form (`sse.…`, src/tasks/keys.ts), a key never has it.
// The token routes, the key authorises: the stream opens with the token alone (it only
// receives what the key's holder sends to it, and a reservation opens one stream, once, so
// a token copied from a URL afterwards opens nothing), but POST and DELETE also need a key
// of the reservation's owner, so a leaked token runs no operation. Every request checks the
// reservation's key is not revoked; each counts against the rate limit, except DELETE.
//
// Across processes: the stream lives in one API process, but POST and DELETE may reach any
// (a balancer without sticky sessions). The holder subscribes to the stream's Redis channel;
// another process checks the request (token, key, rate limit, body) and publishes it there,
// and PUBLISH's count of receivers says whether the stream is open anywhere (404 if not).
// The operation itself runs in the holder's process, so its results take no extra hop.
// One connection per reservation, whichever process it reaches: the GET claims the
// reservation in Redis until the token expires (after that the token opens nothing anyway).
//
// Per operation, the same as a distinct stream: the same yoga plugins (limits, context,
// masking, metrics, shared source streams), one serialisation per result for all its
// subscribers, a slow reader held to what shared-subscriptions.ts allows.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { getOperationAST, type ExecutionArgs, type ExecutionResult } from 'graphql';
import { log } from '../log.ts';
import { httpDuration } from '../metrics.ts';
import { channel, redisCommands, redisPubSub, subscribeChannel } from '../redis.ts';
import { onRevocation } from '../tasks/events.ts';
import {
  authenticateKeyId,
  createStreamReservation,
  isStreamReservation,
  readStreamReservation,
  type Caller,
  type StreamReservation,
} from '../tasks/keys.ts';
import { KeyRevoked } from '../tasks/watch.ts';
import { withTimeout } from '../timeout.ts';
import { isAsyncIterable } from './shared-subscriptions.ts';
import {
  BodyTooLarge,
  corsHeaders,
  failureResult,
  MAX_BODY_BYTES,
  PING_INTERVAL_MS,
  readBody,
  resultJson,
  send,
  SSE_HEADERS,
  trackOpen,
} from './sse-subscriptions.ts';
import { graphqlRefusal, nodeRequestCaller, rateLimit, UNAUTHENTICATED_MESSAGE } from './edge.ts';
import { yoga } from './yoga.ts';

/** graphql-sse's names for the token: the header, and the query parameter. */
const TOKEN_HEADER = 'x-graphql-event-stream-token';
const TOKEN_PARAMETER = 'token';
/** An operation id is the client's; bounded, it goes into every event of the operation. */
const MAX_OPERATION_ID_CHARS = 128;
const REDIS_TIMEOUT_MS = 1000;

interface Params {
  query: string;
  variables?: Record<string, unknown> | null;
  operationName?: string | null;
}

/** What another process sends to the stream's holder. */
type Forwarded = { op: 'start'; id: string; params: Params } | { op: 'stop'; id: string };

const streamTopic = (nonce: string) => channel(`sse-stream:${nonce}`);
const claimKey = (nonce: string) => channel(`sse-claim:${nonce}`);

/** Whether `request` belongs to the single-connection mode (decided from its head). */
export function isSingleConnectionRequest(request: IncomingMessage): boolean {
  const path = (request.url ?? '').split('?', 1)[0];
  if (path !== yoga.graphqlEndpoint || request.method === 'OPTIONS') return false; // CORS preflights are yoga's
  if (request.method === 'PUT' || request.method === 'DELETE') return true;
  return tokenOf(request) !== null;
}

/** The reservation token: the header first, else a `?token=` of the reservation's form. */
function tokenOf(request: IncomingMessage): string | null {
  const header = request.headers[TOKEN_HEADER];
  if (typeof header === 'string' && header) return header;
  const query = new URL(request.url ?? '/', 'http://localhost').searchParams.get(TOKEN_PARAMETER);
  return isStreamReservation(query) ? query : null;
}

/** This process's open streams, by the nonce of their reservation. */
const streams = new Map<string, SingleStream>();

class RedisUnavailable extends Error {
  override name = 'RedisUnavailable';
}

async function redis<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await withTimeout(work(), REDIS_TIMEOUT_MS, 'no answer from Redis');
  } catch (error) {
    throw new RedisUnavailable((error as Error).message);
  }
}

function errorResponse(status: number, code: string, message: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ errors: [{ message, extensions: { code } }] }), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

const unauthenticated = (message: string) => errorResponse(401, 'UNAUTHENTICATED', message, { 'www-authenticate': 'Bearer' });
const badRequest = (message: string) => errorResponse(400, 'BAD_REQUEST', message);
const notOpen = () => errorResponse(404, 'NOT_FOUND', 'the stream of this reservation is not open (reserve another with PUT and open it)');

/** Serves a request of the single-connection mode (isSingleConnectionRequest). */
export async function serveSingleConnection(request: IncomingMessage, response: ServerResponse): Promise<void> {
  const startedAt = performance.now();
  const reply = async (web: Response) => {
    for (const [name, value] of Object.entries(corsHeaders(request.headers.origin))) web.headers.set(name, value);
    httpDuration.observe({ method: request.method ?? 'GET', route: yoga.graphqlEndpoint, status: String(web.status) }, (performance.now() - startedAt) / 1000);
    await send(response, web);
  };
  try {
    if (request.method === 'PUT') return await reply(await reserve(request));
    const token = tokenOf(request);
    const reservation = readStreamReservation(token);
    if (!reservation) {
      return await reply(unauthenticated(token ? 'the stream reservation token is not valid' : `a stream reservation token is required (${TOKEN_HEADER} header, from PUT /graphql)`));
    }
    const caller = await authenticateKeyId(reservation.keyId);
    if (!caller) return await reply(unauthenticated(UNAUTHENTICATED_MESSAGE));
    if (request.headers.accept?.includes('text/event-stream')) {
      const refused = await connect(request, response, reservation, caller, startedAt);
      if (refused) await reply(refused);
      return;
    }
    if (request.method !== 'POST' && request.method !== 'DELETE') {
      return await reply(new Response(null, { status: 405, headers: { allow: 'PUT, POST, DELETE, GET (Accept: text/event-stream)' } }));
    }
    const refused = await checkKey(request, caller);
    if (refused) return await reply(refused);
    if (request.method === 'POST') return await reply(await operate(request, reservation, caller));
    return await reply(await stopOperation(request, reservation));
  } catch (error) {

    if (response.headersSent) {
      response.destroy();
      return;
    }
    if (error instanceof RedisUnavailable) {
      log.warn({ err: error.message }, 'single-connection SSE: Redis unavailable');
      return reply(errorResponse(503, 'SERVICE_UNAVAILABLE', 'the stream cannot be reached now (Redis unavailable); try again shortly', { 'retry-after': '5' }));
    }
    // PostgreSQL unreachable while authenticating: 503, as everywhere (errors.ts).
    const { errors } = failureResult(error);
    const http = errors![0].extensions?.http as { status?: number; headers?: Record<string, string> } | undefined;
    return reply(
      errorResponse(http?.status ?? 500, String(errors![0].extensions?.code ?? 'INTERNAL_SERVER_ERROR'), errors![0].message, http?.headers),
    );
  }
}

/** POST and DELETE: a key of the reservation's owner must come with the token. */
async function checkKey(request: IncomingMessage, reserved: Caller): Promise<Response | null> {
  const caller = await nodeRequestCaller(request);
  if (!caller) return unauthenticated(UNAUTHENTICATED_MESSAGE);
  if (caller.owner !== reserved.owner) return unauthenticated('the key is not of the owner the stream was reserved for');
  return null;
}

/** PUT: the key gets a reservation token. */
async function reserve(request: IncomingMessage): Promise<Response> {
  const caller = await nodeRequestCaller(request);
  if (!caller) return unauthenticated(UNAUTHENTICATED_MESSAGE);
  const refusal = await rateLimit(caller, request);
  if (refusal) return graphqlRefusal(refusal);
  return new Response(createStreamReservation(caller), {
    status: 201,
    headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' },
  });
}

/** GET with Accept: text/event-stream: opens the reservation's stream (or answers why not). */
async function connect(
  request: IncomingMessage,
  response: ServerResponse,
  reservation: StreamReservation,
  caller: Caller,
  startedAt: number,
): Promise<Response | null> {
  if (reservation.expiresAt <= Date.now()) return unauthenticated('the stream reservation expired; reserve another with PUT');
  const refusal = await rateLimit(caller, request);
  if (refusal) return graphqlRefusal(refusal);
  const used = () => errorResponse(409, 'CONFLICT', 'this reservation has been used: one stream per reservation (reserve another with PUT)');
  if (streams.has(reservation.nonce)) return used();
  const claimed = await redis(() =>
    redisCommands().set(claimKey(reservation.nonce), '1', 'PX', Math.max(0, reservation.expiresAt - Date.now()) + 5000, 'NX'),
  );
  if (claimed === null) return used();

  const stream = new SingleStream(response, caller, reservation.nonce);
  streams.set(reservation.nonce, stream);
  try {
    await stream.listen();
  } catch (error) {
    stream.close();
    throw error instanceof RedisUnavailable ? error : new RedisUnavailable((error as Error).message);
  }
  // The client may have gone meanwhile: its 'close' has fired already.
  if (response.destroyed || !response.socket || response.socket.destroyed) {
    stream.close();
    return null;
  }
  stream.open();
  httpDuration.observe({ method: request.method ?? 'GET', route: yoga.graphqlEndpoint, status: '200' }, (performance.now() - startedAt) / 1000);
  return null;
}

/** POST: an operation for the reservation's stream, wherever it is open. */
async function operate(request: IncomingMessage, reservation: StreamReservation, caller: Caller): Promise<Response> {
  if (!request.headers['content-type']?.startsWith('application/json')) return badRequest('an operation is a JSON body (Content-Type: application/json)');
  const refusal = await rateLimit(caller, request);
  if (refusal) return graphqlRefusal(refusal);
  let body: unknown;
  try {
    body = JSON.parse((await readBody(request, MAX_BODY_BYTES)).toString('utf8'));
  } catch (error) {
    if (error instanceof BodyTooLarge) return errorResponse(413, 'PAYLOAD_TOO_LARGE', `an operation is at most ${MAX_BODY_BYTES} bytes`);
    return badRequest('the body is not JSON');
  }
  const { query, variables, operationName, extensions } = (body ?? {}) as Record<string, unknown>;
  if (typeof query !== 'string') return badRequest('the request has no query');
  if (variables != null && (typeof variables !== 'object' || Array.isArray(variables))) return badRequest('variables must be an object');
  if (operationName != null && typeof operationName !== 'string') return badRequest('operationName must be a string');
  const id = (extensions as { operationId?: unknown } | null | undefined)?.operationId;
  if (typeof id !== 'string' || id === '' || id.length > MAX_OPERATION_ID_CHARS) {
    return badRequest(`extensions.operationId must be a string of 1 to ${MAX_OPERATION_ID_CHARS} characters`);
  }
  const params: Params = { query, variables: variables as Params['variables'], operationName: operationName as Params['operationName'] };
  const local = streams.get(reservation.nonce);
  if (local) {
    if (local.ops.has(id)) return errorResponse(409, 'CONFLICT', `operation "${id}" is already running on this stream`);
    local.start(id, params);
  } else if (!(await forward(reservation.nonce, { op: 'start', id, params }))) return notOpen();
  return new Response(null, { status: 202 });
}

/** DELETE ?operationId=: stops that operation (never rate-limited: it only frees resources). */
async function stopOperation(request: IncomingMessage, reservation: StreamReservation): Promise<Response> {
  const id = new URL(request.url ?? '/', 'http://localhost').searchParams.get('operationId');
  if (!id) return badRequest('operationId is missing from the query');
  const local = streams.get(reservation.nonce);
  if (local) local.stop(id);
  else if (!(await forward(reservation.nonce, { op: 'stop', id }))) return notOpen();
  return new Response(null, { status: 200 });
}

/** Publishes to the stream's holder; false if no process holds it. */
async function forward(nonce: string, message: Forwarded): Promise<boolean> {
  const receivers = await redis(() => redisPubSub().publisher.publish(streamTopic(nonce), JSON.stringify(message)));
  return receivers > 0;
}

interface Operation {
  stopped: boolean;
  iterator: AsyncIterator<ExecutionResult> | null;
}

const nextEvent = (id: string, result: ExecutionResult) => `event: next\ndata: {"id":${JSON.stringify(id)},"payload":${resultJson(result)}}\n\n`;
const completeEvent = (id: string) => `event: complete\ndata: {"id":${JSON.stringify(id)}}\n\n`;

/** One open single-connection stream and the operations running on it. */
class SingleStream {
  readonly ops = new Map<string, Operation>();
  private closed = false;
  private drain: Promise<void> | null = null;
  private cleanups: (() => void)[] = [];

  constructor(
    private readonly response: ServerResponse,
    private readonly caller: Caller,
    private readonly nonce: string,
  ) {}

  /** Subscribes to what other processes forward, and to revocations of the key. */
  async listen() {
    const { engine } = redisPubSub();
    const subscription = await subscribeChannel(streamTopic(this.nonce), ((message: Forwarded) => {
      if (this.closed || typeof message?.id !== 'string') return;
      // A duplicate id forwarded from another process is dropped (a local one gets 409).
      if (message.op === 'start' && !this.ops.has(message.id)) this.start(message.id, message.params);
      else if (message.op === 'stop') this.stop(message.id);
    }) as (message: never) => void);
    this.cleanups.push(() => engine.unsubscribe(subscription));
    const offRevoked = await onRevocation((name) => name === this.caller.owner && this.revoke());
    this.cleanups.push(offRevoked);
  }

  open() {
    const { response } = this;
    response.socket?.setNoDelay(true);
    response.writeHead(200, { ...SSE_HEADERS, ...corsHeaders(response.req.headers.origin) });
    response.write(':\n\n');
    const ping = setInterval(() => !response.writableNeedDrain && response.write(':\n\n'), PING_INTERVAL_MS);
    this.cleanups.push(() => clearInterval(ping));
    const onClose = () => this.close();
    response.once('close', onClose);
    this.cleanups.push(() => response.off('close', onClose));
    // Shutdown ends the stream without `complete`s: the client reconnects to another process.
    this.cleanups.push(trackOpen(() => this.close()));
  }

  /** Ends the stream and every operation on it (no `complete`: the client or shutdown ended it). */
  close() {
    if (this.closed) return;
    this.closed = true;
    if (streams.get(this.nonce) === this) streams.delete(this.nonce);
    for (const id of [...this.ops.keys()]) this.stop(id);
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    // Not open yet (Redis failed us, or the client left first): the caller answers, or nobody.
    if (this.response.headersSent && !this.response.writableEnded) this.response.end();
  }

  /** The key was revoked: each operation ends with UNAUTHENTICATED, then the stream. */
  private revoke() {
    if (this.closed) return;
    const revoked = failureResult(new KeyRevoked());
    for (const id of [...this.ops.keys()]) {
      this.stop(id);
      this.write(nextEvent(id, revoked) + completeEvent(id));
    }
    this.close();
  }

  start(id: string, params: Params) {
    const op: Operation = { stopped: false, iterator: null };
    this.ops.set(id, op);
    this.run(id, op, params).catch((error: unknown) => {
      log.error({ err: error }, 'single-connection SSE operation failed');
      this.stop(id);
    });
  }

  /** Stops an operation without a `complete` (the client asked, or went away). */
  stop(id: string) {
    const op = this.ops.get(id);
    if (!op) return;
    this.ops.delete(id);
    op.stopped = true;
    void Promise.resolve(op.iterator?.return?.()).catch(() => {});
  }

  private write(chunk: string): boolean {
    if (this.closed || this.response.writableEnded) return true;
    return this.response.write(chunk);
  }

  /** Resolves when the client has read what was written (or the stream closed). */
  private drained(): Promise<void> {
    this.drain ??= new Promise<void>((resolve) => {
      const done = () => {
        this.response.off('drain', done);
        this.response.off('close', done);
        this.drain = null;
        resolve();
      };
      this.response.once('drain', done);
      this.response.once('close', done);
    });
    return this.drain;
  }

  private async run(id: string, op: Operation, params: Params) {
    const { schema, parse, validate, contextFactory, execute, subscribe } = yoga.getEnveloped({
      // A stand-in request for yoga's plugins. POST, because yoga refuses mutations "from a GET request".
      request: new Request(`http://sse${yoga.graphqlEndpoint}`, { method: 'POST' }),
      params,
      streamCaller: this.caller,
    });
    let result: unknown;
    try {
      const document = parse(params.query);
      const errors = validate(schema, document);
      if (errors.length) result = { errors };
      else {
        const args: ExecutionArgs = {
          schema,
          document,
          operationName: params.operationName,
          variableValues: params.variables,
          contextValue: await contextFactory(),
        };
        const kind = getOperationAST(document, params.operationName)?.operation;
        result = await (kind === 'subscription' ? subscribe(args) : execute(args));
      }
    } catch (error) {
      result = failureResult(error); // a syntax error, PostgreSQL down: as yoga would say it
    }
    if (isAsyncIterable(result)) {
      const iterator = result[Symbol.asyncIterator]();
      op.iterator = iterator;
      if (op.stopped) {
        // Stopped while it subscribed: let go now.
        await Promise.resolve(iterator.return?.()).catch(() => {});
        return;
      }
      try {
        for (;;) {
          const step = await iterator.next();
          if (op.stopped) return;
          if (step.done) break;
          if (step.value != null && !this.write(nextEvent(id, step.value))) await this.drained();
          if (op.stopped || this.closed) return;
        }
      } catch (error) {
        if (op.stopped) return;
        this.write(nextEvent(id, failureResult(error)));
      }
    } else {
      if (op.stopped) return;
      this.write(nextEvent(id, result as ExecutionResult));
    }
    if (op.stopped) return;
    this.ops.delete(id);
    this.write(completeEvent(id));
  }
}
