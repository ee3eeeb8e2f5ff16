// `npm run api`: one API process (GraphQL, SSE, WebSocket, images, health).
process.title = 'tasklane-api';

import { config } from '../config.ts';
import { prisma, whenDatabaseAvailable } from '../db.ts';
import { startup } from '../http/routes.ts';
import { startApiServer, type ApiServer } from '../http/server.ts';
import { loadSigningSecret } from '../image-urls.ts';
import { log } from '../log.ts';
import { startMetricsPush } from '../metrics.ts';
import { migrate } from '../migrate.ts';
import { blobStore } from '../blobs.ts';
import { closeRedis } from '../redis.ts';
import { onStopRequest } from '../stop-signals.ts';
import { closeQueue } from '../tasks/queue.ts';

async function main() {
  // Listen at once: /health answers, /ready says 503 (and every other route 503
  // SERVICE_UNAVAILABLE) until PostgreSQL answers and the schema is current.
  startup.pending = 'waiting for PostgreSQL and migrations';
  const api = await startApiServer(config.port, config.host);
  let stopMetrics: (() => Promise<void>) | undefined;
  onStopRequest((signal) => void shutdown(signal, api, () => stopMetrics?.()));

  const applied = await whenDatabaseAvailable('migrations', () => migrate(config.databaseUrl, { store: blobStore(), log: (message, details) => log.info(details ?? {}, message) }));
  if (applied.length) log.info({ applied }, 'migrations applied');
  await whenDatabaseAvailable('signing secret', loadSigningSecret);
  // The first request to a store is the slow one (an S3 client resolves its credentials and
  // connects): make it now, not in the first /ready or upload. A store that is down is no
  // reason not to start: /ready says so, uploads are refused until it is back.
  await blobStore()
    .check()
    .catch((error: unknown) => log.warn({ err: (error as Error).message }, 'the blob store does not accept writes (yet)'));
  startup.pending = null;
  stopMetrics = startMetricsPush('api');
  log.info({ port: api.port, host: config.host }, `api listening on http://${config.host}:${api.port}/graphql`);
}

let stopping = false;
async function shutdown(signal: string, api: ApiServer, stopMetrics: () => Promise<void> | undefined) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'api shutting down');
  // Whatever hangs (a dead Redis or PostgreSQL), the process is gone soon after the grace.
  setTimeout(() => {
    log.warn('shutdown took too long; exiting anyway');
    process.exit(1);
  }, config.shutdownGraceMs + 4000).unref();
  await api.close(config.shutdownGraceMs);
  await stopMetrics();
  await closeQueue();
  await closeRedis();
  await prisma.$disconnect();
  process.exit(0);
}

main().catch((error) => {
  log.fatal({ err: error }, 'api failed to start');
  process.exit(1);
});
