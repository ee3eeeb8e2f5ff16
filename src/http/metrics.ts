// /metrics (Prometheus text format) and the yoga plugins that time HTTP requests and
// GraphQL operations and count open subscriptions. What the metrics are and how the
// workers' reach this endpoint: src/metrics.ts.
import { createHash, timingSafeEqual } from 'node:crypto';
import { Kind, type DocumentNode, type OperationDefinitionNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import client from 'prom-client';
import { pendingCallbacks } from '../callbacks/store.ts';
import { config } from '../config.ts';
import { prisma } from '../db.ts';
import { log } from '../log.ts';
import { activeSubscriptions, clusterRegistry, graphqlDuration, httpDuration } from '../metrics.ts';
import { queueCounts } from '../tasks/queue.ts';
import { storedImageTotals } from '../tasks/retention.ts';
import { oldestDueQueuedMs } from '../tasks/store.ts';

/** Measured at scrape time from the shared stores, so the same from every API process. */
const sharedState = new client.Registry();
new client.Gauge({
  name: 'tasklane_queue_jobs',
  help: 'Jobs on the Redis queue, by state (waiting, active, delayed)',
  labelNames: ['state'] as const,
  registers: [sharedState],
  async collect() {
    this.reset();
    try {
      const counts = await queueCounts();
      for (const [state, count] of Object.entries(counts)) this.set({ state }, count);
    } catch (error) {
      log.warn({ err: (error as Error).message }, 'metrics: queue depth unavailable');
    }
  },
});
new client.Gauge({
  name: 'tasklane_tasks',
  help: 'Tasks in PostgreSQL, by status and job definition (one GROUP BY per scrape)',
  labelNames: ['status', 'job_definition'] as const,
  registers: [sharedState],
  async collect() {
    this.reset();
    try {
      const rows = await prisma.$queryRaw<{ status: string; jobDefinition: string; count: number }[]>`
        SELECT "status"::text, "jobDefinition"::text, count(*)::int AS "count" FROM "Task" GROUP BY 1, 2`;
      for (const row of rows) this.set({ status: row.status, job_definition: row.jobDefinition }, row.count);
    } catch (error) {
      log.warn({ err: (error as Error).message }, 'metrics: task counts unavailable');
    }
  },
});

new client.Gauge({
  name: 'tasklane_oldest_queued_task_seconds',
  help: 'How long the longest-waiting due QUEUED task has waited; grows without bound when no worker takes jobs',
  registers: [sharedState],
  async collect() {
    try {
      this.set((await oldestDueQueuedMs()) / 1000);
    } catch (error) {
      this.reset();
      log.warn({ err: (error as Error).message }, 'metrics: oldest queued task unavailable');
    }
  },
});

new client.Gauge({
  name: 'tasklane_tasks_waiting_for_slot',
  help: 'QUEUED tasks waiting because their key has MAX_RUNNING_TASKS_PER_KEY tasks running',
  registers: [sharedState],
  async collect() {
    try {
      const [{ count }] = await prisma.$queryRaw<{ count: number }[]>`
        SELECT count(*)::int AS "count" FROM "Task" WHERE "status" = 'QUEUED' AND "waitingForSlot"`;
      this.set(count);
    } catch (error) {
      this.reset();
      log.warn({ err: (error as Error).message }, 'metrics: waiting task count unavailable');
    }
  },
});

// Both callback gauges from one query per scrape.
let pendingRead: { at: number; value: Promise<{ count: number; oldestSeconds: number }> } | undefined;
const readPendingCallbacks = () => {
  if (!pendingRead || Date.now() - pendingRead.at > 1000) pendingRead = { at: Date.now(), value: pendingCallbacks() };
  return pendingRead.value;
};
new client.Gauge({
  name: 'tasklane_callbacks_pending',
  help: 'Callback messages neither delivered (2xx) nor given up',
  registers: [sharedState],
  async collect() {
    try {
      this.set((await readPendingCallbacks()).count);
    } catch (error) {
      this.reset();
      log.warn({ err: (error as Error).message }, 'metrics: pending callbacks unavailable');
    }
  },
});
new client.Gauge({
  name: 'tasklane_callback_oldest_pending_seconds',
  help: 'Age of the oldest callback message neither delivered nor given up (0: none); grows while a receiver is down or no worker delivers',
  registers: [sharedState],
  async collect() {
    try {
      this.set((await readPendingCallbacks()).oldestSeconds);
    } catch (error) {
      this.reset();
      log.warn({ err: (error as Error).message }, 'metrics: oldest pending callback unavailable');
    }
  },
});

// The blob store's contents as the Image rows count them (the images not expired): one
// aggregate per scrape, shared by both gauges. Blobs no row points at are not counted.
let imageTotals: Promise<{ objects: number; bytes: number }> | null = null;
function sharedImageTotals() {
  imageTotals ??= storedImageTotals().finally(() => setImmediate(() => (imageTotals = null)));
  return imageTotals;
}
for (const [name, help, field] of [
  ['tasklane_blob_store_objects', 'Images in the blob store (rows of images not removed by retention)', 'objects'],
  ['tasklane_blob_store_bytes', 'Bytes of the images in the blob store (sum of their sizes, from their rows)', 'bytes'],
] as const) {
  new client.Gauge({
    name,
    help,
    registers: [sharedState],
    async collect() {
      try {
        this.set((await sharedImageTotals())[field]);
      } catch (error) {
        this.reset();
        log.warn({ err: (error as Error).message }, 'metrics: blob store totals unavailable');
      }
    },
  });
}

/** This API process's own runtime (CPU, memory, event loop); not merged across processes. */
const processRuntime = new client.Registry();
client.collectDefaultMetrics({ register: processRuntime });

export async function metrics(request: Request): Promise<Response> {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    return new Response('method not allowed\n', { status: 405, headers: { allow: 'GET, HEAD' } });
  }
  if (!metricsAuthorized(request.headers.get('authorization'))) {
    return new Response('METRICS_TOKEN is set: send Authorization: Bearer <METRICS_TOKEN>\n', {
      status: 401,
      headers: { 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer' },
    });
  }
  const merged = await clusterRegistry('api');
  const body = (await Promise.all([merged.metrics(), sharedState.metrics(), processRuntime.metrics()]))
    .join('\n')
    // prom-client prints NaN (e.g. the event-loop lag before its first sample) as `Nan`, which the
    // exposition format does not know; scrapers expect `NaN`.
    .replace(/ Nan$/gm, ' NaN');
  return new Response(body, { status: 200, headers: { 'content-type': client.Registry.PROMETHEUS_CONTENT_TYPE } });
}

/** True when METRICS_TOKEN is unset, or `header` is `Bearer <METRICS_TOKEN>` (compared in constant time). */
function metricsAuthorized(header: string | null): boolean {
  if (!config.metricsToken) return true;
  const match = /^\s*Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!match) return false;
  // Hashes of equal length, so neither the comparison nor its length check tells anything.
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(match[1]), digest(config.metricsToken));
}

/** A bounded route label: ids become `:id`, unknown paths `other`. */
export function routeLabel(pathname: string): string {
  if (pathname === '/graphql' || pathname === '/metrics' || pathname === '/health' || pathname === '/ready') return pathname;
  if (pathname.startsWith('/images/')) return '/images/:id';
  if (pathname.startsWith('/uploads/')) return '/uploads/:id';
  if (pathname === '/dashboard' || pathname.startsWith('/dashboard/')) return '/dashboard';
  if (pathname === '/api/openapi.json' || pathname === '/api/tasks' || pathname === '/api/uploads') return pathname;
  const task = /^\/api\/tasks\/[^/]+(\/run|\/status)?\/?$/.exec(pathname);
  if (task) return `/api/tasks/:id${task[1] ?? ''}`;
  return 'other';
}

/** Times every request; must come first among the plugins (an earlier endResponse skips later onRequest hooks). */
export function httpMetricsPlugin(): Plugin {
  // Keyed by the per-request server context: a later plugin may replace the Request
  // object itself (requestBody wraps the body), the context stays the same.
  const started = new WeakMap<object, { at: number; route: string }>();
  return {
    onRequest({ serverContext, url }) {
      started.set(serverContext, { at: performance.now(), route: routeLabel(url.pathname) });
    },
    onResponse({ request, response, serverContext }) {
      const start = started.get(serverContext);
      if (!start) return;
      httpDuration.observe(
        { method: request.method, route: start.route, status: String(response.status) },
        (performance.now() - start.at) / 1000,
      );
    },
  };
}

function operationOf(document: DocumentNode, name: string | null | undefined): { type: string; field: string } {
  const operation = document.definitions.find(
    (d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION && (!name || d.name?.value === name),
  );
  const first = operation?.selectionSet.selections.find((s) => s.kind === Kind.FIELD);
  // Root field names are bounded by the schema, unlike client-chosen operation names.
  return { type: operation?.operation ?? 'unknown', field: first && first.kind === Kind.FIELD ? first.name.value : 'unknown' };
}

/** GraphQL execution times and the open subscriptions gauge. */
export function graphqlMetricsPlugin(): Plugin {
  return {
    onExecute({ args }) {
      const at = performance.now();
      const { type, field } = operationOf(args.document, args.operationName);
      return {
        onExecuteDone() {
          graphqlDuration.observe({ operation_type: type, field }, (performance.now() - at) / 1000);
        },
      };
    },
    onSubscribe({ args }) {
      const { field } = operationOf(args.document, args.operationName);
      return {
        onSubscribeResult({ result, setResult }) {
          if (!(Symbol.asyncIterator in Object(result))) return; // refused before streaming
          activeSubscriptions.inc({ field });
          // Not envelop's onEnd: it misses a stream that ends by throwing (a revoked key's),
          // which then stayed counted for good (checked against @envelop/core 5.6.1).
          setResult(onceEnded(result as AsyncIterable<unknown>, () => activeSubscriptions.dec({ field })) as typeof result);
        },
      };
    },
  };
}

/**
 * `source`, calling `ended` once when it ends in any way: done, cancelled (return), or
 * failed (next rejects, throw). A plain iterator, not an async generator: a generator's
 * return() would wait for a pending next(), and an idle subscription could not be cancelled.
 */
function onceEnded<T>(source: AsyncIterable<T>, ended: () => void): AsyncIterableIterator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let over = false;
  const end = () => {
    if (over) return;
    over = true;
    ended();
  };
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    next: () =>
      iterator.next().then(
        (step) => {
          if (step.done) end();
          return step;
        },
        (error: unknown) => {
          end();
          throw error;
        },
      ),
    return: (value?: unknown) => {
      end();
      return iterator.return?.(value) ?? Promise.resolve({ done: true as const, value: value as T });
    },
    throw: (error?: unknown) => {
      end();
      return iterator.throw?.(error) ?? Promise.reject(error);
    },
  };
}
