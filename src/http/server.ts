// Listens: one HTTP server for GraphQL (HTTP; SSE in both modes of the GraphQL over SSE
// protocol), the plain routes, and WebSocket subscriptions (graphql-transport-ws protocol,
// graphql-ws) on the same port and path.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import { CloseCode } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { log } from '../log.ts';
import type { Context } from '../graphql/builder.ts';
import { connectionCaller, rateLimit, refusalError } from './edge.ts';
import { startup } from './routes.ts';
import { isSingleConnectionRequest, serveSingleConnection } from './sse-single.ts';
import { closeSseStreams, maybeSseSubscription, serveSseSubscription } from './sse-subscriptions.ts';
import { yoga } from './yoga.ts';

/**
 * The largest WebSocket message accepted (ws' default is 100 MiB). Messages carry
 * subscription documents and variables, never files; the token limit applies too.
 */
const MAX_WEBSOCKET_MESSAGE_BYTES = 1024 * 1024;
/**
 * How long an early answer's connection keeps swallowing the unread body before it is cut:
 * the client must have read the answer by then (a reset discards what it had not read yet),
 * on a loaded machine too.
 */
const UNREAD_BODY_LINGER_MS = 5000;
/** How long an idle keep-alive connection stays open (see where it is set). */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

export interface ApiServer {
  server: Server;
  port: number;
  /** Stops accepting, ends subscriptions, waits for in-flight requests (up to `graceMs`). */
  close(graceMs: number): Promise<void>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- envelop's execute/subscribe are untyped here
type EnvelopedRoot = { execute: (args: ExecutionArgs) => any; subscribe: (args: ExecutionArgs) => any };

export async function startApiServer(port: number, host: string): Promise<ApiServer> {
  const server = createServer((request, response) => {
    // Still starting (waiting for PostgreSQL, migrating): only the probes are answered.
    if (startup.pending && !/^\/(health|ready)(\?|$)/.test(request.url ?? '')) {
      response.writeHead(503, { 'content-type': 'application/json', 'retry-after': '5' });
      response.end(JSON.stringify({ errors: [{ message: `the service is starting (${startup.pending}); try again shortly`, extensions: { code: 'SERVICE_UNAVAILABLE' } }] }));
      return;
    }
    // A response sent before the body was read (413, 401, 429 on an upload) leaves the
    // client still writing. Node keeps the connection for the next request and reads and
    // discards the rest of the body, however long; or, when the answer closes the connection,
    // closes the socket as soon as the answer is flushed — and the client's bytes still
    // arriving at a closed socket make the kernel reset the connection, which throws away the
    // answer the client has not read yet. So: a closing socket lingers (reading and
    // discarding) instead, until the client has closed its side or the linger is over; and
    // either kind is cut at the end of the linger if the client is still sending then. A
    // keep-alive connection whose body did end is left alone: the client may be using it for
    // its next request. (Node queues its close as `socket.destroy` on the socket's 'finish'
    // before our listener runs; checked on Node 20 and 24 by test/security.e2e.test.ts's
    // chunked refusals. test/keep-alive.test.ts checks both halves of the rule.)
    response.once('finish', () => {
      if (request.complete) return;
      const socket = request.socket;
      if (!socket) return;
      const closing = socket.listeners('finish').includes(socket.destroy);
      if (closing) socket.removeListener('finish', socket.destroy);
      setTimeout(() => {
        if (closing || !request.complete) socket.destroy();
      }, UNREAD_BODY_LINGER_MS).unref();
    });
    // GraphQL over SSE's single-connection mode (reservation, stream, operations): ours alone.
    if (isSingleConnectionRequest(request)) {
      serveSingleConnection(request, response).catch((error: unknown) => {
        log.error({ err: error }, 'single-connection SSE request failed');
        response.destroy();
      });
    } else if (maybeSseSubscription(request)) {
      // SSE subscriptions take a lighter path; it hands back to yoga whatever is not one.
      serveSseSubscription(request, response, () => void yoga(request, response)).catch((error: unknown) => {
        log.error({ err: error }, 'SSE subscription failed');
        response.destroy();
      });
    } else void yoga(request, response);
  });
  const sockets = new WebSocketServer({ server, path: yoga.graphqlEndpoint, maxPayload: MAX_WEBSOCKET_MESSAGE_BYTES });
  const wsServer = useServer(
    {
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args),
      subscribe: (args) => (args.rootValue as EnvelopedRoot).subscribe(args),
      // Refuse the connection itself without a valid key. graphql-ws would close with 4403
      // Forbidden, which its client (and so Apollo's and urql's) retries five times with
      // backoff; 4401 Unauthorized is final for them, and says what is wrong.
      onConnect: async (ctx) => {
        if (startup.pending) {
          // 1013 Try Again Later (RFC 6455's registry): graphql-ws clients reconnect.
          ctx.extra.socket.close(1013, 'the service is starting; try again shortly');
          return false;
        }
        if (await connectionCaller(ctx.connectionParams)) return true;
        ctx.extra.socket.close(CloseCode.Unauthorized, 'Unauthorized: a valid API key is required');
        return false;
      },
      onSubscribe: async (ctx, _id, payload) => {
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          // A stand-in request for yoga's plugins. POST, because yoga refuses mutations
          // "from a GET request", and graphql-ws carries mutations too.
          request: new Request(`http://websocket${yoga.graphqlEndpoint}`, { method: 'POST' }),
          connectionParams: ctx.connectionParams,
          params: payload,
        });
        let document;
        try {
          document = parse(payload.query);
        } catch (error) {
          return [error as GraphQLError];
        }
        const errors = validate(schema, document);
        if (errors.length) return errors;
        let contextValue;
        try {
          contextValue = await contextFactory();
        } catch (error) {
          if (error instanceof GraphQLError) return [error];
          throw error;
        }
        // Every operation started over the socket counts against the key's rate limit (no
        // node request given: the socket's upgrade request is shared by all its operations).
        const refusal = await rateLimit((contextValue as Context).caller);
        if (refusal) return [refusalError(refusal)];
        return {
          schema,
          document,
          operationName: payload.operationName,
          variableValues: payload.variables,
          contextValue,
          rootValue: { execute, subscribe },
        };
      },
    },
    sockets,
  );

  // An idle keep-alive connection is closed by the server after keepAliveTimeout; a client
  // that sends its next request at that very moment gets "other side closed" (a POST is not
  // retried). Clients close idle connections a little before the timeout the server
  // announces (Keep-Alive: timeout=…), so a long one makes that race rare — on a loaded
  // machine too — and suits load balancers (their idle timeouts are 60 s).
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const actualPort = (server.address() as AddressInfo).port;

  return {
    server,
    port: actualPort,
    async close(graceMs) {
      // New connections are refused from here on; idle keep-alive ones are closed.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await wsServer.dispose(); // completes every WebSocket subscription, closes with 1001
      // SSE streams never end by themselves (both modes): ours are ended here, yoga's dispose ends its own.
      closeSseStreams();
      await yoga.dispose();
      const timer = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(timer);
      log.info('api server closed');
    },
  };
}
