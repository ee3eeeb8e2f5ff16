// The request-body limit: at most MAX_UPLOAD_BYTES and at most one file, refused with
// PAYLOAD_TOO_LARGE (HTTP 413). A declared Content-Length over the limit is refused before
// reading a byte; a body without one (chunked) is counted while it streams and refused as
// soon as it passes the limit, so no more than MAX_UPLOAD_BYTES is ever held in memory.
import { createGraphQLError, type Plugin } from 'graphql-yoga';
import { config } from '../config.ts';

export const PAYLOAD_TOO_LARGE = 'PAYLOAD_TOO_LARGE';

const overLimit = (what: string) => `${what}, over the limit of ${config.maxUploadBytes} bytes (MAX_UPLOAD_BYTES)`;
const ONE_FILE = 'a request may carry one file (the image); this one carries more';

export function payloadTooLargeResponse(message: string): Response {
  return new Response(JSON.stringify({ errors: [{ message, extensions: { code: PAYLOAD_TOO_LARGE } }] }), {
    status: 413,
    // The rest of the body is not read: server.ts cuts the connection shortly after.
    headers: { 'content-type': 'application/json' },
  });
}

const payloadTooLarge = (message: string) =>
  createGraphQLError(message, { extensions: { code: PAYLOAD_TOO_LARGE, http: { status: 413 } } });

/** Why a request's body was refused while it streamed in (set by the counting stream). */
const refused = new WeakMap<Request, string>(); // request → the client-facing message

/**
 * `respond` formats the early refusal of a declared oversize body (the REST facade answers
 * in its own error format); by default a GraphQL error response.
 */
export function uploadLimit(respond: (url: URL, message: string) => Response = (_, message) => payloadTooLargeResponse(message)): Plugin {
  const max = config.maxUploadBytes;
  return {
    onRequest({ request, url, setRequest, endResponse, fetchAPI }) {
      if (!request.body) return;
      const declared = request.headers.get('content-length');
      if (declared !== null && Number(declared) > max) {
        return endResponse(respond(url, overLimit(`the request body is ${declared} bytes`)));
      }
      // Count the bytes as they arrive, whatever Content-Length claimed.
      let received = 0;
      let limited: Request;
      const counted = request.body.pipeThrough(
        new fetchAPI.TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            received += chunk.byteLength;
            if (received > max) {
              refused.set(limited, `the request body is over the limit of ${max} bytes (MAX_UPLOAD_BYTES)`);
              controller.error(new Error('request body over MAX_UPLOAD_BYTES'));
            } else controller.enqueue(chunk);
          },
        }),
      );
      // `formDataLimits` is read by @whatwg-node's Request (busboy): the second file part
      // stops the parse at once. (A native Request ignores it; test/security covers it.)
      limited = new fetchAPI.Request(request.url, {
        method: request.method,
        headers: request.headers,
        body: counted,
        signal: request.signal,
        duplex: 'half',
        formDataLimits: { files: 1, fileSize: max, fieldSize: max, fields: 16, parts: 17 },
      } as RequestInit);
      setRequest(limited);
    },
    onRequestParse({ requestParser, setRequestParser }) {
      if (!requestParser) return;
      setRequestParser(async (request) => {
        try {
          return await requestParser(request);
        } catch (error) {
          const refusal = bodyRefusal(request, error);
          throw refusal ? payloadTooLarge(refusal) : error;
        }
      });
    },
  };
}

/**
 * Why reading `request`'s body failed with `error`, if it was one of our limits (the
 * client-facing message); null for any other failure. For readers of the body outside
 * the GraphQL parsers (the REST facade).
 */
export function bodyRefusal(request: Request, error: unknown): string | null {
  const reason = refused.get(request);
  if (reason) return reason;
  const message = String((error as Error)?.message ?? '');
  if (/Files limit exceeded/.test(message)) return ONE_FILE;
  if (/size limit exceeded|size exceeded/i.test(message)) {
    return `a part of the request is over the limit of ${config.maxUploadBytes} bytes (MAX_UPLOAD_BYTES)`;
  }
  return null;
}
