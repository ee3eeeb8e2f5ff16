// The yoga instance: GraphQL over HTTP (GET, POST, multipart), SSE subscriptions,
// GraphiQL, plus the plain routes. Built here, listened in server.ts, so tests can also
// call yoga.fetch in-process.
import { createYoga, type Plugin } from 'graphql-yoga';
import { config } from '../config.ts';
import { schema } from '../graphql/index.ts';
import { createLoaders } from '../graphql/loaders.ts';
import type { Context } from '../graphql/builder.ts';
import { log } from '../log.ts';
import type { Caller } from '../tasks/keys.ts';
import { connectionCaller, graphqlCaller, graphqlRefusal, problem, rateLimit, restRefusal, unauthenticatedError } from './edge.ts';
import { dashboard } from './dashboard.ts';
import { graphiqlOptions, renderGraphiQL } from './graphiql.ts';
import { maskError, requestErrorStatus } from './errors.ts';
import { documentLimits, hideSchemaHints } from './graphql-limits.ts';
import { graphqlMetricsPlugin, httpMetricsPlugin, metrics } from './metrics.ts';
import { sharedSubscriptions } from './shared-subscriptions.ts';
import { handleRest, REST_PREFIX } from './rest.ts';
import * as routes from './routes.ts';
import { multipartRequests } from './multipart.ts';
import { payloadTooLargeResponse, requestBody } from './request-body.ts';

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
 * The disk store's upload URL (PUT /uploads/<id>): its signature is the credential, its
 * declared byteSize the body limit (not MAX_REQUEST_BYTES). Not rate-limited: each upload
 * takes one PUT, and createUpload, which made it, was.
 */
const uploadRoute: Plugin = {
  async onRequest({ request, url, endResponse }) {
    if (url.pathname.startsWith('/uploads/')) return endResponse(await routes.upload(request, url));
  },
};

/**
 * The per-key rate limit (edge.ts), checked before the body is read or a document parsed,
 * once per node request (one counted by sse-subscriptions.ts before it fell back to yoga
 * is not counted again).
 */
const requestRateLimit: Plugin = {
  async onRequest({ request, url, endResponse, serverContext }) {
    let caller;
    try {
      caller = await graphqlCaller(request, url);
    } catch {
      return; // PostgreSQL unreachable: the route or the context reports it (503)
    }
    const refusal = await rateLimit(caller, (serverContext as { req?: object }).req);
    // Each surface refuses in its own format: the REST facade's, or GraphQL's.
    if (refusal) endResponse(isRest(url) ? restRefusal(refusal) : graphqlRefusal(refusal));
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
 * The key before the document: a request without a valid one gets 401 before its document
 * is parsed or validated, so an unauthenticated client learns nothing about the schema
 * (no "Did you mean …", no validation errors). (WebSocket: checked on connect, server.ts.)
 */
const authenticateFirst: Plugin = {
  async onParams({ request, setResult }) {
    const caller = await graphqlCaller(request);
    if (!caller) setResult({ errors: [unauthenticatedError()] });
  },
};

/**
 * What a transport that authenticated the caller itself passes to getEnveloped: graphql-ws
 * its connectionParams, the single-connection SSE mode the caller of its reservation
 * (never set from a request: only server code builds this context).
 */
export interface TransportContext {
  connectionParams?: Record<string, unknown>;
  streamCaller?: Caller;
}

export const yoga = createYoga<TransportContext, Context>({
  schema,
  graphqlEndpoint: '/graphql',
  landingPage: false,
  batching: false,
  // Ours is requestBody() (MAX_REQUEST_BYTES, or MAX_UPLOAD_BYTES and one file for a
  // multipart upload; PAYLOAD_TOO_LARGE). Yoga's own would cap every body at 25,000,000
  // bytes and turn a chunked multipart overflow into a 400.
  maxRequestBodySize: false,
  // Ours is multipartRequests() (multipart.ts): yoga's reads the whole body into memory
  // before the resolver runs; ours hands the resolver the file part as it streams in.
  multipart: false,
  logging: {
    debug: (...args) => log.debug(args),
    info: (...args) => log.info(args),
    warn: (...args) => log.warn(args),
    error: (...args) => log.error(args),
  },
  // Our own assets, no CDN (graphiql.ts); off in production.
  graphiql: config.production ? false : graphiqlOptions,
  renderGraphiQL,
  maskedErrors: { maskError },
  context: async ({ request, connectionParams, streamCaller }): Promise<Context> => {
    if (streamCaller) return { caller: streamCaller, loaders: createLoaders() };
    const caller = connectionParams ? await connectionCaller(connectionParams) : await graphqlCaller(request);
    if (!caller) throw unauthenticatedError();
    return { caller, loaders: createLoaders() };
  },
  // Order matters: open routes and uploads, then the rate limit, the multipart parser
  // (before the body limit, whose parse hook wraps it), the body limit (it wraps the body
  // every later reader sees: REST, the GraphQL parsers), then the key (before any document
  // is looked at), document limits, production's hiding of schema hints, and the status of
  // request errors.
  plugins: [
    httpMetricsPlugin(),
    openRoutes,
    uploadRoute,
    requestRateLimit,
    multipartRequests(),
    requestBody(refuseBody),
    keyedRoutes,
    authenticateFirst,
    ...documentLimits(),
    ...(config.production ? [hideSchemaHints()] : []),
    requestErrorStatus(),
    graphqlMetricsPlugin(),
    // Last: it replaces the subscribe function (identical subscriptions share one stream).
    sharedSubscriptions(),
  ],
});
