// The edge policy: who a request is, whether its key's rate limit lets it through, and what
// an error becomes. Every entry point (GraphQL over HTTP, SSE both modes, WebSocket, REST,
// images, uploads) asks here, so each is decided in one place.
// Which credential counts where (SECURITY.md documents the rules):
// - API key in `Authorization: Bearer`: everywhere.
// - API key as `?token=`: GraphQL over HTTP only (EventSource cannot send headers; discouraged).
// - stream ticket as `?ticket=`: only an SSE subscription (GET /graphql, Accept:
//   text/event-stream, a subscription operation); anywhere else it is no credential.
// - WebSocket: the key in connectionParams' `authorization`.
// Stream reservations (single-connection SSE) and signed image/upload URLs are checked by
// their routes (sse-single.ts, routes.ts): they are not API keys.
// What counts against the rate limit (rateLimit; rate-limit.ts counts in Redis): every
// request with a valid key, once, before its body is read — GraphQL over HTTP, REST,
// images by key, an SSE subscription, single-connection SSE's PUT, stream and each
// operation (never its DELETE) — and every operation started over a WebSocket. Not an
// upload's PUT (its signed URL came from a counted createUpload).
// Refusals are rows (Unavailable, RateLimited: code, status, problem type, message,
// retryAfter) that each surface renders in its own format.
import type { IncomingMessage } from 'node:http';
import { getOperationAST, GraphQLError, parse } from 'graphql';
import { config } from '../config.ts';
import { isDatabaseUnavailable } from '../db.ts';
import { log } from '../log.ts';
import { StorageUnavailable } from '../storage/index.ts';
import {
  IdempotencyKeyReused,
  InvalidImage,
  InvalidInput,
  InvalidTaskState,
  TaskDoesNotExist,
  TaskError,
  TooManyTasks,
  WrongTaskIdFormat,
} from '../tasks/errors.ts';
import { authenticate, authenticateStreamTicket, type Caller } from '../tasks/keys.ts';
import { KeyRevoked } from '../tasks/watch.ts';
import { takeRequest } from './rate-limit.ts';

export const UNAUTHENTICATED_MESSAGE = 'a valid API key is required: send Authorization: Bearer <key>';

/** The GraphQL error of a request without a valid credential (401, WWW-Authenticate: Bearer). */
export const unauthenticatedError = () =>
  new GraphQLError(UNAUTHENTICATED_MESSAGE, {
    extensions: { code: 'UNAUTHENTICATED', http: { status: 401, headers: { 'www-authenticate': 'Bearer' } } },
  });

/** The key from `Authorization: Bearer <key>` (or a bare key). */
function bearerKey(header: unknown): string | null {
  if (typeof header !== 'string' || !header) return null;
  const match = /^\s*Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : header.trim() || null;
}

/** REST and images: the `Authorization` header only. */
export function headerCaller(request: Request): Promise<Caller | null> {
  return authenticate(bearerKey(request.headers.get('authorization')));
}

/** WebSocket: the key in connectionParams (`authorization`, or `Authorization`). */
export function connectionCaller(connectionParams: Record<string, unknown> | undefined): Promise<Caller | null> {
  return authenticate(bearerKey(connectionParams?.authorization ?? connectionParams?.Authorization));
}

/**
 * GraphQL over HTTP: its API key (`Authorization: Bearer`, or `?token=`), or a stream
 * ticket (`?ticket=`), which counts only on an SSE subscription.
 */
export async function graphqlCaller(request: Request, url = new URL(request.url)): Promise<Caller | null> {
  const key = bearerKey(request.headers.get('authorization')) ?? url.searchParams.get('token');
  if (key) return authenticate(key);
  const ticket = url.searchParams.get('ticket');
  return ticket && isSseSubscription(request, url) ? authenticateStreamTicket(ticket) : null;
}

/**
 * A node request to /graphql handled before yoga (SSE single-connection mode's PUT, POST
 * and DELETE): its key, as graphqlCaller reads it (a ticket never counts: not a GET stream).
 */
export function nodeRequestCaller(request: IncomingMessage): Promise<Caller | null> {
  const headers: Record<string, string> = {};
  if (request.headers.authorization) headers.authorization = request.headers.authorization;
  return graphqlCaller(new Request(new URL(request.url ?? '/', 'http://localhost'), { method: request.method, headers }));
}

function isSseSubscription(request: Request, url: URL): boolean {
  if (request.method !== 'GET' || url.pathname !== '/graphql' || !request.headers.get('accept')?.includes('text/event-stream')) return false;
  try {
    const document = parse(url.searchParams.get('query') ?? '', { maxTokens: config.graphqlLimits.maxTokens });
    return getOperationAST(document, url.searchParams.get('operationName') ?? undefined)?.operation === 'subscription';
  } catch {
    return false;
  }
}

// ---- Errors: one table, domain error class → GraphQL code, HTTP status, REST problem type ----

interface DomainErrorClass {
  cls: new (...args: never[]) => TaskError;
  /** GraphQL `extensions.code`. */
  code: string;
  /** The HTTP status (REST). */
  status: number;
  /** The REST problem type. */
  problem: string;
}

const DOMAIN_ERRORS: DomainErrorClass[] = [
  { cls: WrongTaskIdFormat, code: 'WRONG_TASK_ID_FORMAT', status: 400, problem: 'WrongTaskIdFormat' },
  { cls: TaskDoesNotExist, code: 'TASK_DOES_NOT_EXIST', status: 404, problem: 'TaskDoesNotExist' },
  { cls: InvalidTaskState, code: 'INVALID_TASK_STATE', status: 409, problem: 'InvalidTaskState' },
  { cls: InvalidInput, code: 'BAD_USER_INPUT', status: 400, problem: 'InvalidInput' },
  { cls: InvalidImage, code: 'INVALID_IMAGE', status: 400, problem: 'InvalidImage' },
  { cls: TooManyTasks, code: 'TOO_MANY_TASKS', status: 429, problem: 'TooManyTasks' },
  { cls: IdempotencyKeyReused, code: 'IDEMPOTENCY_KEY_REUSED', status: 422, problem: 'IdempotencyKeyReused' },
  { cls: KeyRevoked, code: 'UNAUTHENTICATED', status: 401, problem: 'Unauthenticated' },
];

/** A domain error's row of the table; an unlisted domain error is a BAD_REQUEST; not a domain error: null. */
export function classifyDomainError(error: unknown): DomainErrorClass | null {
  if (!(error instanceof TaskError)) return null;
  return DOMAIN_ERRORS.find(({ cls }) => error instanceof cls) ?? { cls: TaskError, code: 'BAD_REQUEST', status: 400, problem: 'BadRequest' };
}

/** A domain error as a client-visible GraphQL error with its code; anything else: null. */
export function exposeDomainError(error: unknown, path?: readonly (string | number)[]): GraphQLError | null {
  const row = classifyDomainError(error);
  if (!row) return null;
  return new GraphQLError((error as Error).message, {
    path,
    extensions: { code: row.code, ...(error instanceof InvalidInput && error.field ? { field: error.field } : {}) },
  });
}

// ---- Refusals of the edge: a dependency down (503), the rate limit (429) ----

/** A refusal: GraphQL `extensions.code`, HTTP status, REST problem type, and when to retry (s). */
interface Refusal {
  code: string;
  status: number;
  problem: string;
  message: string;
  retryAfter: number;
}

/** A REST problem, the REST facade's error format: `{ error: <problem type>, message, ...extra }`. */
export const problem = (status: number, error: string, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify({ error, message, ...extra }), { status, headers: { 'content-type': 'application/json', ...headers } });

/** A dependency down (the blob store, PostgreSQL): what every surface answers, 503. */
export interface Unavailable extends Refusal {
  code: 'STORAGE_UNAVAILABLE' | 'SERVICE_UNAVAILABLE';
  status: 503;
  problem: 'StorageUnavailable' | 'ServiceUnavailable';
  retryAfter: 5;
}

/** The blob store or PostgreSQL unreachable (logged as a warning), else null. */
export function classifyUnavailable(error: unknown): Unavailable | null {
  // The blob store first: its errors may quote a refused connection.
  if (error instanceof StorageUnavailable) {
    log.warn({ err: error.message }, 'blob store unavailable');
    return { code: 'STORAGE_UNAVAILABLE', status: 503, problem: 'StorageUnavailable', message: 'the image store is unavailable; try again shortly', retryAfter: 5 };
  }
  if (isDatabaseUnavailable(error)) {
    log.warn({ err: (error as Error | undefined)?.message }, 'database unavailable');
    return { code: 'SERVICE_UNAVAILABLE', status: 503, problem: 'ServiceUnavailable', message: 'the database is unavailable; try again shortly', retryAfter: 5 };
  }
  return null;
}

/** Over the key name's rate limit (RATE_LIMIT_PER_MINUTE): 429. */
export interface RateLimited extends Refusal {
  code: 'RATE_LIMITED';
  status: 429;
  problem: 'RateLimited';
}

/** The decision on each node request: whichever paths a request takes, it is counted once. */
const decisions = new WeakMap<object, Promise<RateLimited | null>>();

/**
 * Counts a request of `caller` against its key name's rate limit: null if it may go on, else
 * the refusal. Without a caller (no valid key) nothing is counted: such a request gets 401
 * and touches no task. Given `request` (the node request), the decision is made once for
 * it: a path that counted it and then hands it on (an SSE subscription falling back to
 * yoga) gets the same answer again, uncounted. Without it (each WebSocket operation,
 * yoga.fetch in-process) every call counts.
 */
export function rateLimit(caller: Caller | null, request?: object): Promise<RateLimited | null> {
  if (!caller) return Promise.resolve(null);
  let decision = request && decisions.get(request);
  if (!decision) {
    decision = takeRequest(caller.owner).then((waitMs) => (waitMs === null ? null : rateLimited(waitMs)));
    if (request) decisions.set(request, decision);
  }
  return decision;
}

function rateLimited(waitMs: number): RateLimited {
  const retryAfter = Math.max(1, Math.ceil(waitMs / 1000));
  const message = `rate limit of ${config.rateLimitPerMinute} requests per minute per key (RATE_LIMIT_PER_MINUTE) reached; retry after ${retryAfter} s`;
  return { code: 'RATE_LIMITED', status: 429, problem: 'RateLimited', message, retryAfter };
}

// The rate limit's refusal in each surface's format: each says when to retry in its body
// (`retryAfter`), and over HTTP in Retry-After too.

/** GraphQL over HTTP and SSE: `{ errors: [{ message, extensions: { code, retryAfter } }] }`. */
export function graphqlRefusal({ status, code, message, retryAfter }: RateLimited): Response {
  return new Response(JSON.stringify({ errors: [{ message, extensions: { code, retryAfter } }] }), {
    status,
    headers: { 'content-type': 'application/json', 'retry-after': String(retryAfter) },
  });
}

/** WebSocket: the operation's error (no status or headers there). */
export const refusalError = ({ code, message, retryAfter }: RateLimited) => new GraphQLError(message, { extensions: { code, retryAfter } });

/** REST: the problem `{ error: "RateLimited", message, retryAfter }`. */
export const restRefusal = ({ status, problem: type, message, retryAfter }: RateLimited) =>
  problem(status, type, message, { retryAfter }, { 'retry-after': String(retryAfter) });
