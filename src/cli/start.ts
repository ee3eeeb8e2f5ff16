// `npm start`: the supervisor. Applies migrations, then runs one API process and WORKERS
// worker processes on this host, restarts any that dies, and on SIGTERM/SIGINT stops
// them all (each finishes or hands back its work) before exiting.
process.title = 'tasklane';

import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { config } from '../config.ts';
import { log } from '../log.ts';
import { migrate } from '../migrate.ts';
import { blobStore } from '../blobs.ts';

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

function spawn(role: Child['role'], script: string): void {
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

async function main() {
  const applied = await migrate(config.databaseUrl, { store: blobStore(), log: (message, details) => log.info(details ?? {}, message) });
  if (applied.length) log.info({ applied }, 'migrations applied');
  spawn('api', API);
  for (let i = 0; i < config.workers; i++) spawn('worker', WORKER);
  log.info({ workers: config.workers }, 'tasklane started');

  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, children: children.size }, 'stopping all processes');
    for (const child of children) child.process.kill('SIGTERM');
    // Each child has SHUTDOWN_GRACE_MS to finish; past that (plus a margin) it is killed.
    const force = setTimeout(() => {
      for (const child of children) child.process.kill('SIGKILL');
    }, config.shutdownGraceMs + 5000);
    const check = setInterval(() => {
      if (children.size === 0) {
        clearInterval(check);
        clearTimeout(force);
        log.info('all processes stopped');
        process.exit(0);
      }
    }, 50);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((error) => {
  log.fatal({ err: error }, 'tasklane failed to start');
  process.exit(1);
});
