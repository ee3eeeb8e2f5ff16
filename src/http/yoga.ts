// The yoga instance: GraphQL over HTTP (GET, POST, multipart), SSE subscriptions,
// GraphiQL, plus the plain routes. Built here, listened in server.ts, so tests can also
// call yoga.fetch in-process.
import { GraphQLError } from 'graphql';
import { createYoga, type Plugin } from 'graphql-yoga';
import { config } from '../config.ts';
import { schema } from '../graphql/index.ts';
import { createLoaders } from '../graphql/loaders.ts';
import type { Context } from '../graphql/builder.ts';
import { log } from '../log.ts';
import { authenticate, bearerKey } from '../tasks/keys.ts';
import { dashboard } from './dashboard.ts';
import { maskError } from './errors.ts';
import { documentLimits, hideSchemaHints } from './graphql-limits.ts';
import { graphqlMetricsPlugin, httpMetricsPlugin, metrics } from './metrics.ts';
import { countedRequests, rateLimitedError, rateLimitedResponse, takeRequest } from './rate-limit.ts';
import { sharedSubscriptions } from './shared-subscriptions.ts';
import { handleRest, problem, REST_PREFIX } from './rest.ts';
import * as routes from './routes.ts';
import { payloadTooLargeResponse, requestBody } from './request-body.ts';

export function graphqlError(status: number, code: string, message: string): Response {
  return new Response(JSON.stringify({ errors: [{ message, extensions: { code } }] }), {
    status,
    headers: { 'content-type': 'application/json' },
  });
}

/** The API key of a request: `Authorization: Bearer`, or `?token=` (EventSource cannot send headers). */
export function requestKey(request: Request, url: URL): string | null {
  return bearerKey(request.headers.get('authorization')) ?? url.searchParams.get('token');
}

/** Routes that need neither a key nor a body: answered before anything else. */
const openRoutes: Plugin = {
  async onRequest({ request, url, endResponse }) {
    if (url.pathname === '/health') return endResponse(routes.health());
    if (url.pathname === '/ready') return endResponse(await routes.ready());
    if (url.pathname === '/metrics') return endResponse(await metrics(request));
    if (url.pathname === '/dashboard' || url.pathname.startsWith('/dashboard/')) return endResponse(dashboard(request, url));
  },
};

/**
 * The per-key rate limit, checked before the body is read or a document parsed. Requests
 * without a valid key are not counted here (they get 401 without touching a task).
 */
const rateLimit: Plugin = {
  async onRequest({ request, url, endResponse, serverContext }) {
    const nodeRequest = (serverContext as { req?: object }).req;
    if (nodeRequest && countedRequests.has(nodeRequest)) return; // counted before yoga (sse-subscriptions.ts)
    const key = requestKey(request, url);
    if (!key) return;
    let caller;
    try {
      caller = await authenticate(key);
    } catch {
      return; // PostgreSQL unreachable: the route or the context reports it (503)
    }
    const waitMs = caller ? await takeRequest(caller.owner) : null;
    if (waitMs === null) return;
    // Each surface refuses in its own format: the REST facade's, or GraphQL's.
    if (isRest(url)) {
      const { message, retryAfter } = rateLimitedError(waitMs);
      return endResponse(problem(429, 'RateLimited', message, { retryAfter }, { 'retry-after': String(retryAfter) }));
    }
    endResponse(rateLimitedResponse(waitMs));
  },
};

const isRest = (url: URL) => url.pathname === REST_PREFIX || url.pathname.startsWith(`${REST_PREFIX}/`);

/** Images and the REST facade: after the rate limit and the body limit (requestBody). */
const keyedRoutes: Plugin = {
  async onRequest({ request, url, endResponse }) {
    if (url.pathname.startsWith('/images/')) return endResponse(await routes.image(request, url));
    // The REST facade answers in its own error format (also for a refused body).
    if (isRest(url)) return endResponse(await handleRest(request, url));
  },
};

/** A body over its limit, refused from its Content-Length, in the format of its route. */
const refuseBody = (url: URL, message: string) =>
  isRest(url) ? problem(413, 'PayloadTooLarge', message) : payloadTooLargeResponse(message);

/**
 * A document that does not validate (unknown field, enum value, …) is a bad request:
 * HTTP 400 whatever the Accept header, as GraphQL over HTTP specifies for its own type.
 */
const validationIsBadRequest: Plugin = {
  onValidate() {
    return ({ result }) => {
      for (const error of result) {
        // `spec: false` tells yoga this 400 holds for application/json too (its default is 200 there).
        const extensions = error.extensions as Record<string, unknown>;
        extensions.code ??= 'GRAPHQL_VALIDATION_FAILED';
        extensions.http = { ...(extensions.http as object | undefined), status: 400, spec: false };
      }
    };
  },
};

export const UNAUTHENTICATED_MESSAGE = 'a valid API key is required: send Authorization: Bearer <key>';

export const yoga = createYoga<{ connectionParams?: Record<string, unknown> }, Context>({
  schema,
  graphqlEndpoint: '/graphql',
  landingPage: false,
  batching: false,
  // Ours is requestBody() (MAX_REQUEST_BYTES, or MAX_UPLOAD_BYTES and one file for a
  // multipart upload; PAYLOAD_TOO_LARGE). Yoga's own would cap every body at 25,000,000
  // bytes and turn a chunked multipart overflow into a 400.
  maxRequestBodySize: false,
  logging: {
    debug: (...args) => log.debug(args),
    info: (...args) => log.info(args),
    warn: (...args) => log.warn(args),
    error: (...args) => log.error(args),
  },
  graphiql: config.production
    ? false
    : {
        title: 'Tasklane',
        headers: JSON.stringify({ Authorization: 'Bearer <your API key: npm run key -- create me>' }),
        defaultQuery: `# Put your API key in the Headers tab below, then run an operation.
query RecentTasks {
  tasks(first: 10) { edges { node { id status progress error result { url width height } } } }
}

subscription Dashboard {
  tasksUpdated { id status progress version }
}
`,
      },
  maskedErrors: { maskError },
  context: async ({ request, connectionParams }): Promise<Context> => {
    const fromWebSocket = connectionParams?.authorization ?? connectionParams?.Authorization;
    const key =
      bearerKey(typeof fromWebSocket === 'string' ? fromWebSocket : null) ??
      bearerKey(request.headers.get('authorization')) ??
      new URL(request.url).searchParams.get('token'); // EventSource cannot send headers
    const caller = await authenticate(key);
    if (!caller) {
      throw new GraphQLError(UNAUTHENTICATED_MESSAGE, {
        extensions: { code: 'UNAUTHENTICATED', http: { status: 401, headers: { 'www-authenticate': 'Bearer' } } },
      });
    }
    return { caller, loaders: createLoaders() };
  },
  // Order matters: open routes, then the rate limit, then the body limit (it wraps the body
  // every later reader sees: REST, the GraphQL parsers), then document limits and
  // production's hiding of schema hints.
  plugins: [
    httpMetricsPlugin(),
    openRoutes,
    rateLimit,
    requestBody(refuseBody),
    keyedRoutes,
    ...documentLimits(),
    ...(config.production ? [hideSchemaHints()] : []),
    validationIsBadRequest,
    graphqlMetricsPlugin(),
    // Last: it replaces the subscribe function (identical subscriptions share one stream).
    sharedSubscriptions(),
  ],
});
