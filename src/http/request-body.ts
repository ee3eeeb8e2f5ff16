// The request body: how large it may be, and what a body that does not parse gets.
// - Size: a multipart upload may be MAX_UPLOAD_BYTES and carry one file; any other body (a
//   JSON or form-encoded GraphQL request), and each non-file field of a multipart one
//   (`operations`, `map`), MAX_REQUEST_BYTES. Refused with PAYLOAD_TOO_LARGE (HTTP 413): a
//   declared Content-Length over the limit before a byte is read; a body without one
//   (chunked) is counted while it streams and refused as soon as it passes the limit. A
//   multipart body is never held whole: multipart.ts streams its file to the store.
// - Form: a body or query string the GraphQL request parsers cannot read (JSON that does not
//   parse, a multipart `operations` or `map` that is not JSON, …) is BAD_REQUEST (HTTP 400).
import { GraphQLError } from 'graphql';
import { createGraphQLError, type Plugin } from 'graphql-yoga';
import { config } from '../config.ts';
import { log } from '../log.ts';

export const PAYLOAD_TOO_LARGE = 'PAYLOAD_TOO_LARGE';

export interface Limit {
  bytes: number;
  variable: 'MAX_UPLOAD_BYTES' | 'MAX_REQUEST_BYTES';
}

export const UPLOAD: Limit = { bytes: config.maxUploadBytes, variable: 'MAX_UPLOAD_BYTES' };
export const REQUEST: Limit = { bytes: config.maxRequestBytes, variable: 'MAX_REQUEST_BYTES' };

/** Only a multipart body may carry a file, so only it gets the upload limit. */
const limitOf = (request: Request): Limit =>
  /^multipart\/form-data/i.test(request.headers.get('content-type') ?? '') ? UPLOAD : REQUEST;

export const theLimit = (limit: Limit) => `the limit of ${limit.bytes} bytes (${limit.variable})`;
export const ONE_FILE = 'a request may carry one file (the image); this one carries more';

export function payloadTooLargeResponse(message: string): Response {
  return new Response(JSON.stringify({ errors: [{ message, extensions: { code: PAYLOAD_TOO_LARGE } }] }), {
    status: 413,
    // The rest of the body is not read: server.ts cuts the connection shortly after.
    headers: { 'content-type': 'application/json' },
  });
}

export const payloadTooLarge = (message: string) =>
  createGraphQLError(message, { extensions: { code: PAYLOAD_TOO_LARGE, http: { status: 413 } } });

/** A body that is not what its Content-Type says, or not a GraphQL request (HTTP 400). */
export const badRequest = (message: string) => createGraphQLError(message, { extensions: { code: 'BAD_REQUEST', http: { status: 400 } } });

/** Why a request's body was refused while it streamed in (set by the counting stream). */
const refused = new WeakMap<Request, string>(); // request → the client-facing message

/**
 * `respond` formats the early refusal of a declared oversize body (the REST facade answers
 * in its own error format); by default a GraphQL error response.
 */
export function requestBody(respond: (url: URL, message: string) => Response = (_, message) => payloadTooLargeResponse(message)): Plugin {
  return {
    onRequest({ request, url, setRequest, endResponse, fetchAPI }) {
      if (!request.body) return;
      const limit = limitOf(request);
      const declared = request.headers.get('content-length');
      if (declared !== null && Number(declared) > limit.bytes) {
        return endResponse(respond(url, `the request body is ${declared} bytes, over ${theLimit(limit)}`));
      }
      // Count the bytes as they arrive, whatever Content-Length claimed. Past the limit the
      // counted body fails, and the request's own body is left unread rather than cancelled
      // (hence no for-await, whose early exit cancels): cancelling it would close the
      // connection the 413 still has to go out on (server.ts closes it once that is sent).
      let received = 0;
      let limited: Request | undefined;
      const source = request.body as unknown as AsyncIterable<Uint8Array>;
      const counted = (async function* () {
        const chunks = source[Symbol.asyncIterator]();
        for (;;) {
          const next = await chunks.next(); // throws when the client went away
          if (next.done) return;
          received += next.value.byteLength;
          if (received > limit.bytes) {
            refused.set(limited!, `the request body is over ${theLimit(limit)}`);
            throw new Error(`request body over ${limit.variable}`);
          }
          yield next.value;
        }
      })();
      limited = new fetchAPI.Request(request.url, {
        method: request.method,
        headers: request.headers,
        body: counted,
        signal: request.signal,
        duplex: 'half',
      } as unknown as RequestInit); // @whatwg-node's Request takes an async iterable body
      setRequest(limited);
    },
    onRequestParse({ requestParser, setRequestParser }) {
      if (!requestParser) return;
      setRequestParser(async (request) => {
        try {
          return await requestParser(request);
        } catch (error) {
          const refusal = bodyRefusal(request);
          throw refusal ? payloadTooLarge(refusal) : malformed(error);
        }
      });
    },
  };
}

/**
 * Why reading `request`'s body failed, if the counted body passed its limit (the
 * client-facing message); null for any other failure.
 */
export function bodyRefusal(request: Request): string | null {
  return refused.get(request) ?? null;
}

export const isAbort = (error: unknown) => error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');

/**
 * A request the parsers could not read, as a BAD_REQUEST (400) with a short message. Yoga's
 * own refusals keep their message (some lack a code and a status: "Multipart form field
 * "operations" must be a valid JSON string" was a 200); a JSON.parse of a query-string
 * parameter throws a bare SyntaxError, which would otherwise be an "unexpected error" (500).
 */
export function malformed(error: unknown): unknown {
  if (isAbort(error)) return error; // the client went away: yoga answers nobody
  if (error instanceof GraphQLError && error.extensions.code) return error;
  const message =
    error instanceof GraphQLError
      ? error.message
      : error instanceof SyntaxError
        ? 'a JSON parameter of the request (variables or extensions) does not parse'
        : 'the request could not be parsed';
  log.debug({ err: (error as Error)?.message }, 'malformed request');
  return createGraphQLError(message, { extensions: { code: 'BAD_REQUEST', http: { status: 400 } } });
}
