// How an error leaves the GraphQL API (HTTP, SSE, WebSocket): yoga's error masking, ours.
// - A domain error (src/tasks/errors.ts) outside a result union: its code (edge.ts' table).
// - PostgreSQL unreachable: SERVICE_UNAVAILABLE (503, Retry-After), logged as a warning.
// - The blob store unreachable or not writable: STORAGE_UNAVAILABLE (503, Retry-After), likewise.
// - A refusal of the client's request made by graphql-js, yoga or us (a GraphQLError all the
//   way down: a variable that does not coerce, a document that does not parse, a body that
//   is not JSON, …): passed through with a code, logged at debug — it is the client's fault.
// - Anything else is unexpected: "Unexpected error." to the client (never a stack, SQL or a
//   library's internals, whatever NODE_ENV), the details in the log at error level.
// - The HTTP status of a request error (requestErrorStatus, below): as GraphQL over HTTP says.
import { GraphQLError, type ExecutionResult } from 'graphql';
import { maskError as defaultMaskError, type Plugin } from 'graphql-yoga';
import { log } from '../log.ts';
import { classifyUnavailable, exposeDomainError } from './edge.ts';

/** True if `error` is a GraphQLError and so is every error it wraps: a refusal, not a fault. */
function isRefusal(error: unknown): error is GraphQLError {
  if (!(error instanceof GraphQLError)) return false;
  return error.originalError == null || isRefusal(error.originalError);
}

/** A refusal's message is cut here: graphql-js quotes the offending value, however long. */
const MAX_MESSAGE_CHARS = 500;

/** The code of a refusal that came without one (graphql-js gives none, yoga not always). */
function codeOf(error: GraphQLError): string {
  if (error.message.startsWith('Syntax Error')) return 'GRAPHQL_PARSE_FAILED';
  if (error.message.startsWith('Variable "$')) return 'BAD_USER_INPUT'; // a variable that does not coerce
  return 'BAD_REQUEST';
}

export function maskError(error: unknown, message: string, isDev?: boolean): Error {
  const path = error instanceof GraphQLError ? error.path : undefined;
  const original = error instanceof GraphQLError ? error.originalError : error;
  const exposed = exposeDomainError(original, path);
  if (exposed) {
    log.debug({ code: exposed.extensions.code, err: exposed.message }, 'request refused');
    return exposed;
  }
  // The blob store or PostgreSQL down: say so (503, retry later) instead of "Unexpected error".
  const unavailable = classifyUnavailable(original);
  if (unavailable) {
    return new GraphQLError(unavailable.message, {
      path,
      extensions: { code: unavailable.code, http: { status: unavailable.status, headers: { 'retry-after': String(unavailable.retryAfter) } } },
    });
  }
  if (isRefusal(error)) {
    // The errors are fresh per request (as validationIsBadRequest relies on too).
    const extensions = error.extensions as Record<string, unknown>;
    extensions.code ??= codeOf(error);
    if (error.message.length > MAX_MESSAGE_CHARS) error.message = `${error.message.slice(0, MAX_MESSAGE_CHARS)}…`;
    log.debug({ code: extensions.code, err: error.message }, 'request refused');
    return error;
  }
  log.error({ err: original }, 'unexpected error');
  // Never the development variant (it adds the original message and stack, e.g. SQL).
  void isDev;
  return defaultMaskError(error, message, false);
}

/** The codes of a GraphQL request error: the document does not parse or validate, or the variables do not coerce. */
const REQUEST_ERROR_CODES = new Set(['GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED', 'BAD_USER_INPUT']);

/**
 * The status of a well-formed request that fails before execution (a request error: no
 * `data` in the result), as GraphQL over HTTP asks: 200 when the client accepts
 * `application/json` (also without an Accept header), 400 for
 * `application/graphql-response+json`. yoga does so for parse and validation errors
 * (`http.spec`) but gives variable coercion failures a 400 for both; our own refusals of
 * the same kind (GRAPHQL_MAX_TOKENS, MAX_LIST_ITEMS, a misplaced file) come out here too.
 * What is not a request error keeps its own status whatever the Accept header: a body that
 * is not a GraphQL request (BAD_REQUEST 400), 401, 413, 429, 503.
 */
export function requestErrorStatus(): Plugin {
  return {
    onResultProcess({ result }) {
      if (Array.isArray(result) || !result || typeof result !== 'object' || !('errors' in result) || 'data' in result) return;
      for (const error of (result as ExecutionResult).errors ?? []) {
        if (!REQUEST_ERROR_CODES.has(error.extensions?.code as string)) continue;
        // The errors are fresh per request (graphql-js, yoga and our plugins make them).
        const extensions = error.extensions as Record<string, unknown>;
        extensions.http = { ...(extensions.http as object | undefined), status: 400, spec: true };
      }
    },
  };
}
