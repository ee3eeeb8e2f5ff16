// Listens: one HTTP server for GraphQL (HTTP, SSE), the plain routes, and WebSocket
// subscriptions (graphql-transport-ws protocol, graphql-ws) on the same port and path.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import { CloseCode } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { log } from '../log.ts';
import { authenticate, bearerKey } from '../tasks/keys.ts';
import { yoga } from './yoga.ts';

export interface ApiServer {
  server: Server;
  port: number;
  /** Stops accepting, ends subscriptions, waits for in-flight requests (up to `graceMs`). */
  close(graceMs: number): Promise<void>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- envelop's execute/subscribe are untyped here
type EnvelopedRoot = { execute: (args: ExecutionArgs) => any; subscribe: (args: ExecutionArgs) => any };

export async function startApiServer(port: number, host: string): Promise<ApiServer> {
  const server = createServer(yoga);
  const sockets = new WebSocketServer({ server, path: yoga.graphqlEndpoint });
  const wsServer = useServer(
    {
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args),
      subscribe: (args) => (args.rootValue as EnvelopedRoot).subscribe(args),
      // Refuse the connection itself without a valid key. graphql-ws would close with 4403
      // Forbidden, which its client (and so Apollo's and urql's) retries five times with
      // backoff; 4401 Unauthorized is final for them, and says what is wrong.
      onConnect: async (ctx) => {
        const given = ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization;
        if (await authenticate(bearerKey(typeof given === 'string' ? given : null))) return true;
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
      // SSE streams never end by themselves: yoga's dispose ends them.
      await yoga.dispose();
      const timer = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(timer);
      log.info('api server closed');
    },
  };
}
