// `npm start`: the supervisor. Runs one API process and, once migrations are applied,
// WORKERS worker processes on this host, and restarts any that dies. Whatever asks it to
// stop (SIGTERM, SIGINT, SIGHUP, npm going away: src/stop-signals.ts) stops them all (each
// finishes or hands back its work) before it exits; and should it be SIGKILLed, its
// children stop by themselves (their IPC channel closes).
// Started while PostgreSQL is unreachable, it waits for it (the API answers /ready 503
// meanwhile) instead of failing.
// With DATABASE_URL or REDIS_URL unset and nothing on its default port, it first starts an
// embedded PostgreSQL or a private redis-server there (./local-services.ts), and stops them
// after all its children.
process.title = 'tasklane';

import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { config } from '../config.ts';
import { whenDatabaseAvailable } from '../db.ts';
import { log } from '../log.ts';
import { migrate } from '../migrate.ts';
import { blobStore } from '../blobs.ts';
import { onStopRequest, type StopReason } from '../stop-signals.ts';
import { LocalServiceError, localServices } from './local-services.ts';

const API = fileURLToPath(new URL('./api.ts', import.meta.url));
const WORKER = fileURLToPath(new URL('../../worker/index.ts', import.meta.url));
/** A child that dies sooner than this after starting is restarted only after a pause. */
const CRASH_LOOP_MS = 5000;

interface Child {
  role: 'api' | 'worker';
  script: string;
  process: ChildProcess;
  startedAt: number;
}

const children = new Set<Child>();
let stopping = false;
const services = localServices();

function spawn(role: Child['role'], script: string): void {
  if (stopping) return;
  const child: Child = { role, script, process: fork(script, [], { stdio: 'inherit' }), startedAt: Date.now() };
  children.add(child);
  child.process.on('exit', (code, signal) => {
    children.delete(child);
    if (stopping) return;
    const quick = Date.now() - child.startedAt < CRASH_LOOP_MS;
    log.warn({ role, pid: child.process.pid, code, signal }, `${role} exited; restarting${quick ? ' in 1 s' : ''}`);
    setTimeout(() => !stopping && spawn(role, script), quick ? 1000 : 0);
  });
}

function shutdown(reason: StopReason | 'start-up failed', exitCode = 0) {
  if (stopping) return;
  stopping = true;
  log.info({ signal: reason, children: children.size }, 'stopping all processes');
  for (const child of children) child.process.kill('SIGTERM');
  // Each child has SHUTDOWN_GRACE_MS to finish; past that (plus a margin) it is killed.
  const force = setTimeout(() => {
    for (const child of children) child.process.kill('SIGKILL');
  }, config.shutdownGraceMs + 5000);
  const check = setInterval(() => {
    if (children.size === 0) {
      clearInterval(check);
      clearTimeout(force);
      // The database and Redis last: the children drained against them.
      void services
        .stop()
        .catch((error) => log.error({ err: error }, 'stopping the local services failed'))
        .finally(() => {
          log.info('all processes stopped');
          process.exit(exitCode);
        });
    }
  }, 50);
}

async function main() {
  // First of all: a stop request while waiting for PostgreSQL must work too.
  onStopRequest(shutdown);
  await services.start();
  // The API listens at once (its /ready says 503 until PostgreSQL answers and the schema is
  // current); workers start once the migrations are applied.
  spawn('api', API);
  const applied = await whenDatabaseAvailable('migrations', () => migrate(config.databaseUrl, { store: blobStore(), log: (message, details) => log.info(details ?? {}, message) }));
  if (applied.length) log.info({ applied }, 'migrations applied');
  for (let i = 0; i < config.workers; i++) spawn('worker', WORKER);
  if (!stopping) log.info({ workers: config.workers }, 'tasklane started');
}

main().catch((error) => {
  if (stopping) return; // asked to stop while starting: not a failure
  if (error instanceof LocalServiceError) log.fatal(error.message);
  else log.fatal({ err: error }, 'tasklane failed to start');
  shutdown('start-up failed', 1);
});
