// The edge policy: who a request is. Every entry point (GraphQL over HTTP, SSE both modes,
// WebSocket, REST, images) asks here, so it is decided in one place.
// Which credential counts where (SECURITY.md documents the rules):
// - API key in `Authorization: Bearer`: everywhere.
// - API key as `?token=`: GraphQL over HTTP only (EventSource cannot send headers; discouraged).
// - stream ticket as `?ticket=`: only an SSE subscription (GET /graphql, Accept:
//   text/event-stream, a subscription operation); anywhere else it is no credential.
// - WebSocket: the key in connectionParams' `authorization`.
// Stream reservations (single-connection SSE) and signed image/upload URLs are checked by
// their routes (sse-single.ts, routes.ts): they are not API keys.
import type { IncomingMessage } from 'node:http';
import { getOperationAST, GraphQLError, parse } from 'graphql';
import { config } from '../config.ts';
import { authenticate, authenticateStreamTicket, type Caller } from '../tasks/keys.ts';

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

