// `npm run chaos`: a bounded, self-stopping chaos run on this machine. Starts its own
// deployment (`npm start`: supervisor, API, WORKERS workers) on a fresh database and a fresh
// REDIS_PREFIX, submits CHAOS_TASKS tasks through the API over CHAOS_SECONDS while injecting
// faults in turn — SIGKILL a worker mid-job, delete every Redis key of the deployment,
// CLIENT KILL its Redis connections, pg_terminate_backend its PostgreSQL sessions, restart
// the whole service (SIGTERM, start again), cut Redis off for CHAOS_CUT_SECONDS (through a
// TCP proxy the run owns) during a restart's start-up, and right after a restart before
// anything was enqueued, cut PostgreSQL off (likewise) for as long while the service starts
// and in the middle of the burst — then waits for every task to settle and prints
// what happened. Talks only to 127.0.0.1; removes its database and keys and stops every
// process it started. Exit code 0 when nothing was lost, stuck or completed twice.
//
//   CHAOS_TASKS (60)          tasks to submit
//   CHAOS_SECONDS (90)        length of the fault phase (one fault every CHAOS_FAULT_EVERY_MS)
//   CHAOS_FAULT_EVERY_MS (6000)
//   CHAOS_SETTLE_SECONDS (240) how long to wait for the tasks to settle afterwards
//   CHAOS_CUT_SECONDS (30)    how long a Redis or PostgreSQL cut lasts
//   WORKERS (2), WORKER_NICE (0), LEASE_MS, RECONCILE_INTERVAL_MS, SHUTDOWN_GRACE_MS,
//   JOB_TIMEOUT_MS, MAX_ATTEMPTS: passed to the deployment (Tasklane's defaults otherwise).
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { client, type Client } from '../test/helpers/client.ts';
import {
  auditWhenSettled,
  childPids,
  flushPrefix,
  killRedisClients,
  terminateBackends,
  workerOf,
} from '../test/helpers/faults.ts';
import { photo } from '../test/helpers/images.ts';
import { createInfra, type TestInfra } from '../test/helpers/infra.ts';
import { freePort, tcpProxy, type TcpProxy } from '../test/helpers/outage.ts';
import { startRedisProxy, type RedisProxy } from '../test/helpers/redis-proxy.ts';
import { startService, type Service } from '../test/helpers/service.ts';
import { submit } from '../test/helpers/tasks.ts';

const int = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer`);
  return value;
};
const TASKS = int('CHAOS_TASKS', 60);
const CHAOS_MS = int('CHAOS_SECONDS', 90) * 1000;
const FAULT_EVERY_MS = int('CHAOS_FAULT_EVERY_MS', 6000);
const SETTLE_MS = int('CHAOS_SETTLE_SECONDS', 240) * 1000;
const CUT_MS = int('CHAOS_CUT_SECONDS', 30) * 1000;
/** Whatever happens, the run ends (and cleans up) by then. */
const HARD_LIMIT_MS = CHAOS_MS + SETTLE_MS + 180_000;

// --- PostgreSQL cuts. The deployment reaches PostgreSQL through a TCP proxy of ours
// (pass-through until cut; the chaos run's own SQL goes direct). A cut refuses new
// connections and cuts the open ones for CHAOS_CUT_SECONDS; /ready must say 503
// meanwhile and 200 soon after.
type PgFaultKind = 'PostgreSQL cut during start-up' | 'PostgreSQL cut mid-burst';
const PG_FAULTS: PgFaultKind[] = ['PostgreSQL cut during start-up', 'PostgreSQL cut mid-burst'];
let pgProxy: TcpProxy | undefined;
/** Per cut: /ready said 503 (never 200) while PostgreSQL was unreachable, and 200 again afterwards. */
const pgCutsHonest: boolean[] = [];

/** The deployment's DATABASE_URL (through the proxy) and a fixed PORT, so /ready can be asked while it starts. */
async function pgFaultEnv(infra: TestInfra): Promise<Record<string, string>> {
  pgProxy = await tcpProxy(Number(new URL(infra.databaseUrl).port || 5432));
  const viaProxy = new URL(infra.databaseUrl);
  viaProxy.port = String(pgProxy.port);
  return { DATABASE_URL: viaProxy.toString(), PORT: String(await freePort()) };
}

async function readyStatus(url: string): Promise<number | null> {
  try {
    return (await fetch(`${url}/ready`, { signal: AbortSignal.timeout(3000) })).status;
  } catch {
    return null; // not listening
  }
}

/**
 * Cuts PostgreSQL for CUT_MS (during which `during` runs, e.g. a restart), checking /ready
 * at `url` meanwhile; then measures how soon /ready says 200 again. Returns the fault's note.
 */
async function cutPostgres(url: string, during: () => Promise<void> = async () => {}): Promise<string> {
  await pgProxy!.down();
  const cutAt = performance.now();
  await during();
  const seen = new Set<number | null>();
  while (performance.now() - cutAt < CUT_MS) {
    seen.add(await readyStatus(url));
    await sleep(500);
  }
  await pgProxy!.up();
  const upAt = performance.now();
  let backMs = Infinity;
  while (performance.now() - upAt < 60_000) {
    if ((await readyStatus(url)) === 200) {
      backMs = performance.now() - upAt;
      break;
    }
    await sleep(100);
  }
  // Not listening for a moment (a process starting) is no lie; 200 while cut off would be.
  const honest = seen.has(503) && !seen.has(200) && Number.isFinite(backMs);
  pgCutsHonest.push(honest);
  const during503 = [...seen].map((status) => status ?? 'no answer').join('/');
  return `cut ${(CUT_MS / 1000).toFixed(0)} s, /ready ${during503} meanwhile, 200 ${Number.isFinite(backMs) ? `${(backMs / 1000).toFixed(1)} s` : 'never'} after it was back`;
}
// --- end of PostgreSQL cuts

type FaultKind =
  | PgFaultKind
  | 'kill -9 worker'
  | 'flush Redis keys'
  | 'CLIENT KILL'
  | 'pg_terminate_backend'
  | 'restart service'
  | 'Redis cut during start-up'
  | 'Redis cut before the first enqueue';
const FAULTS: FaultKind[] = [
  'kill -9 worker',
  'flush Redis keys',
  'CLIENT KILL',
  'Redis cut during start-up',
  'pg_terminate_backend',
  'restart service',
  'Redis cut before the first enqueue',
  ...PG_FAULTS,
];

interface FaultRecord {
  kind: FaultKind;
  at: Date;
  /** Tasks QUEUED or RUNNING (with their attempt) when the fault hit. */
  inFlight: Map<string, number>;
  /** For a killed worker: the task it was running, and that delivery's attempt. */
  victim?: { id: string; attempt: number };
  note: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const t0 = performance.now();
const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1)}s`;
const say = (message: string) => console.log(`[chaos ${elapsed()}] ${message}`);

let infra: TestInfra | undefined;
let service: Service | undefined;
let redisProxy: RedisProxy | undefined;
const outputs: (() => string)[] = [];

async function main() {
  infra = await createInfra('chaos');
  // Every Redis connection of the deployment goes through a proxy this run owns, so Redis can
  // be cut off for the deployment alone.
  redisProxy = await startRedisProxy();
  const proxy = redisProxy;
  const sql = (text: string, params?: unknown[]) => infra!.sql(text, params);
  // WORKER_NICE 0 unless asked: on a machine shared with other work, niced workers would
  // measure the neighbours' load, not Tasklane's recovery.
  const pgEnv = await pgFaultEnv(infra);
  const env = {
    WORKERS: process.env.WORKERS ?? '2',
    WORKER_NICE: process.env.WORKER_NICE ?? '0',
    LOG_LEVEL: 'info',
    REDIS_URL: proxy.url,
    ...pick(process.env, /^(LEASE_MS|RECONCILE_INTERVAL_MS|SHUTDOWN_GRACE_MS|JOB_TIMEOUT_MS|MAX_ATTEMPTS)$/),
    ...pgEnv,
  };
  say(`database ${new URL(infra.databaseUrl).pathname.slice(1)}, REDIS_PREFIX ${infra.redisPrefix}, ${TASKS} tasks over ${CHAOS_MS / 1000}s, a fault every ${FAULT_EVERY_MS / 1000}s`);
  const start = async () => {
    const s = await startService(infra!, env);
    outputs.push(s.output);
    return s;
  };
  service = await start();
  const key = await infra.createKey('chaos');
  let api: Client = client(service.url, key);

  // The work: AVIF encodes of one to four seconds on a quiet machine (so that every fault
  // finds jobs running: lighter work was done between faults on a quiet machine, and the
  // faults hit idle workers), fast JPEG/WebP resizes between them, and a few broken uploads
  // (a permanent failure). About 2 s of work per task against one task every 1.5 s: two
  // workers stay busy without a growing backlog, so recovery times measure recovery.
  const [big, square] = await Promise.all([photo(1600, 1200), photo(1024, 1024)]);
  const broken = big.subarray(0, Math.floor(big.byteLength * 0.5));
  const kinds = [
    { bytes: square, resize: { width: 1024, format: 'AVIF' } },
    { bytes: big, resize: { width: 800, format: 'WEBP' } },
    { bytes: square, resize: { width: 512, format: 'AVIF' } },
    { bytes: square, resize: { width: 768, format: 'AVIF' } },
    { bytes: big, resize: { width: 320 } },
  ];

  const accepted: string[] = [];
  let refused = 0;
  let submitting = true;
  const submitter = (async () => {
    const every = CHAOS_MS / TASKS;
    for (let i = 0; i < TASKS; i++) {
      const due = t0 + 5000 + i * every;
      if (performance.now() < due) await sleep(due - performance.now());
      const kind = i % 20 === 19 ? { bytes: broken, resize: { width: 100 } } : kinds[i % kinds.length];
      // Retry until the API accepts: during a restart it is briefly not there at all.
      for (;;) {
        try {
          accepted.push(await submit(api, kind.bytes, kind.resize));
          break;
        } catch {
          refused++;
          await sleep(500);
        }
      }
    }
    submitting = false;
  })();

  // The faults, in turn, while tasks keep coming.
  const faults: FaultRecord[] = [];
  await sleep(5000 + FAULT_EVERY_MS / 2);
  // Every kind at least once, even when a slow machine stretches the phase.
  for (let n = 0; n < FAULTS.length || performance.now() - t0 < 5000 + CHAOS_MS; n++) {
    const kind = FAULTS[n % FAULTS.length];
    // The fault's instant is taken before looking: a task that moves on meanwhile is not
    // mistaken for one that never does.
    const at = new Date();
    const snapshot = await sql(`SELECT id, attempts FROM "Task" WHERE status IN ('QUEUED', 'RUNNING')`);
    const record: FaultRecord = {
      kind,
      at,
      inFlight: new Map(snapshot.map((row) => [row.id as string, row.attempts as number])),
      note: '',
    };
    switch (kind) {
      case 'kill -9 worker': {
        const running = await sql(`SELECT id, attempts FROM "Task" WHERE status = 'RUNNING'`);
        const workers = childPids(service.child.pid!, 'tasklane-worker');
        let pid: number | undefined;
        for (const row of running) {
          const owner = outputs.map((o) => workerOf(o(), row.id as string, row.attempts as number)).find((p) => p !== null);
          if (owner && workers.includes(owner)) {
            pid = owner;
            record.victim = { id: row.id as string, attempt: row.attempts as number };
            break;
          }
        }
        pid ??= workers[Math.floor(Math.random() * workers.length)];
        if (pid) process.kill(pid, 'SIGKILL');
        record.note = record.victim ? `pid ${pid}, running task ${record.victim.id.slice(0, 8)}` : `pid ${pid}, idle`;
        break;
      }
      case 'flush Redis keys':
        record.note = `${await flushPrefix(infra.redis, infra.redisPrefix)} keys deleted`;
        break;
      case 'CLIENT KILL':
        record.note = `${await killRedisClients(infra.redis, infra.redisPrefix)} connections killed`;
        break;
      case 'pg_terminate_backend':
        record.note = `${await terminateBackends(infra.databaseUrl)} sessions terminated`;
        break;
      case 'restart service':
      case 'Redis cut during start-up':
      case 'Redis cut before the first enqueue': {
        const stopping = performance.now();
        const code = await service.stop('SIGTERM', 40_000);
        const stoppedIn = (performance.now() - stopping) / 1000;
        if (kind === 'Redis cut during start-up') proxy.cut();
        service = await start();
        api = client(service.url, key);
        record.note = `stopped in ${stoppedIn.toFixed(1)}s (exit ${code}), back in ${((performance.now() - stopping) / 1000).toFixed(1)}s`;
        if (kind !== 'restart service') {
          proxy.cut();
          await sleep(CUT_MS);
          proxy.unblock();
          record.note += `; Redis cut for ${CUT_MS / 1000}s ${kind === 'Redis cut during start-up' ? 'from before the start' : 'right after the start'}`;
        }
        break;
      }
      case 'PostgreSQL cut during start-up': {
        // Stopped while PostgreSQL is up, started while it is cut off: it must wait, not die.
        const code = await service.stop('SIGTERM', 40_000);
        let starting: Promise<Service> | undefined;
        record.note = await cutPostgres(`http://127.0.0.1:${pgEnv.PORT}`, async () => {
          starting = start();
          starting.catch(() => {}); // awaited below
        });
        service = await starting!;
        api = client(service.url, key);
        record.note = `restarted (exit ${code}) while PostgreSQL was unreachable: ${record.note}`;
        break;
      }
      case 'PostgreSQL cut mid-burst':
        record.note = await cutPostgres(service.url);
        break;
    }
    faults.push(record);
    say(`${kind}: ${record.note} (${record.inFlight.size} tasks in flight)`);
    await sleep(FAULT_EVERY_MS);
  }
  say('fault phase over; waiting for the submissions to finish');
  await submitter;
  if (submitting) throw new Error('unreachable');
  say(`${accepted.length} tasks accepted (${refused} submissions refused and retried); waiting for them to settle`);
  const settleStart = performance.now();
  const final = await auditWhenSettled(sql, accepted, SETTLE_MS);
  const settledIn = (performance.now() - settleStart) / 1000;

  // Recovery: per fault, how long until every task in flight at that moment had moved on
  // (a later delivery started, or it finished); for a killed worker, how long until its
  // task was picked up again.
  const events = await sql(`SELECT "taskId", status::text AS status, message, at FROM "TaskEvent" ORDER BY id`);
  const byTask = new Map<string, { status: string; message: string | null; at: Date }[]>();
  for (const e of events) {
    const list = byTask.get(e.taskId as string) ?? [];
    list.push({ status: e.status as string, message: e.message as string | null, at: e.at as Date });
    byTask.set(e.taskId as string, list);
  }
  const movedOn = (id: string, after: Date) =>
    byTask.get(id)?.find((e) => e.at > after && ['RUNNING', 'DONE', 'FAILED', 'DELETED'].includes(e.status))?.at;
  // A killed worker's task is "recovered" when it leaves RUNNING (lease expired, re-queued or failed).
  const recovered = (id: string, after: Date) =>
    byTask.get(id)?.find((e) => e.at > after && e.status !== 'RUNNING')?.at;
  const recovery = faults.map((fault) => {
    let worst = 0;
    for (const id of fault.inFlight.keys()) {
      const at = movedOn(id, fault.at);
      worst = Math.max(worst, at ? at.getTime() - fault.at.getTime() : Infinity);
    }
    const since = (at: Date | undefined) => (at ? at.getTime() - fault.at.getTime() : Infinity);
    return {
      ...fault,
      allMovedOnMs: worst,
      victimRecoveredMs: fault.victim ? since(recovered(fault.victim.id, fault.at)) : undefined,
      victimPickedUpMs: fault.victim ? since(movedOn(fault.victim.id, fault.at)) : undefined,
    };
  });

  // The report.
  const done = [...final.facts.values()].filter((t) => t.status === 'DONE').length;
  const failedByReason = new Map<string, number>();
  for (const task of final.facts.values()) {
    if (task.status !== 'FAILED') continue;
    const reason = (task.error ?? '').replace(/[0-9a-f-]{36}/g, '…').slice(0, 90);
    failedByReason.set(reason, (failedByReason.get(reason) ?? 0) + 1);
  }
  const retried = [...final.facts.values()].filter((t) => t.attempts > 1).length;
  const secs = (ms: number | undefined) => (ms === undefined ? '-' : Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : 'never');
  const lines: string[] = [];
  lines.push('| outcome | tasks |', '|---|---|');
  lines.push(`| submitted (accepted by the API) | ${accepted.length} |`);
  lines.push(`| DONE | ${done} |`);
  for (const [reason, count] of failedByReason) lines.push(`| FAILED: ${reason.replace(/\|/g, '\\|')} | ${count} |`);
  lines.push(`| lost (accepted, not in PostgreSQL) | ${final.lost.length} |`);
  lines.push(`| stuck (not DONE/FAILED ${(SETTLE_MS / 1000).toFixed(0)} s after the faults) | ${final.stuck.length} |`);
  lines.push(`| duplicate completions (>1 DONE/FAILED event) | ${final.duplicates.length} |`);
  lines.push(`| orphaned images | ${final.orphanImages} |`);
  lines.push(`| DONE without result / FAILED without reason | ${final.broken.length} |`);
  lines.push(`| retried at least once (attempts > 1) | ${retried} |`);
  lines.push(`| submissions refused while the API restarted (retried by the client) | ${refused} |`);
  lines.push(`| time from the end of the faults until every task was settled | ${settledIn.toFixed(1)} s |`);
  lines.push('');
  lines.push(
    '| # | fault | detail | in flight | every in-flight task moved on after | killed task re-queued after | killed task running again after |',
    '|---|---|---|---|---|---|---|',
  );
  recovery.forEach((r, i) =>
    lines.push(
      `| ${i + 1} | ${r.kind} | ${r.note} | ${r.inFlight.size} | ${secs(r.allMovedOnMs)} | ${secs(r.victimRecoveredMs)} | ${secs(r.victimPickedUpMs)} |`,
    ),
  );
  lines.push('');
  lines.push('| fault | count | median "moved on" | max "moved on" |', '|---|---|---|---|');
  for (const kind of FAULTS) {
    const times = recovery.filter((r) => r.kind === kind && r.inFlight.size > 0).map((r) => r.allMovedOnMs).sort((a, b) => a - b);
    if (!times.length) continue;
    lines.push(`| ${kind} | ${times.length} | ${secs(times[Math.floor((times.length - 1) / 2)])} | ${secs(times.at(-1))} |`);
  }
  for (const r of recovery.filter((r) => r.victim)) {
    const trail = (byTask.get(r.victim!.id) ?? []).map(
      (e) => `${e.status}@${((e.at.getTime() - r.at.getTime()) / 1000).toFixed(1)}s${e.status === 'QUEUED' && e.message !== 'queued' ? ` (${e.message})` : ''}`,
    );
    lines.push(`killed task ${r.victim!.id.slice(0, 8)} (attempt ${r.victim!.attempt}), events relative to the kill: ${trail.join(' ')}  `);
  }
  console.log(`\n${lines.join('\n')}\n`);
  // The deployment's own logs (JSON lines of every process), for a closer look.
  const logFile = path.join(os.tmpdir(), `${infra.redisPrefix}.log`);
  await writeFile(logFile, outputs.map((o) => o()).join('\n'));
  say(`the deployment's logs: ${logFile}`);
  const ok =
    final.lost.length === 0 &&
    final.stuck.length === 0 &&
    final.duplicates.length === 0 &&
    final.orphanImages === 0 &&
    final.broken.length === 0 &&
    pgCutsHonest.every(Boolean);
  if (!pgCutsHonest.every(Boolean)) say('NOT OK: /ready was not 503 during a PostgreSQL cut, or not 200 after it');
  say(ok ? 'OK: nothing lost, stuck or completed twice' : 'NOT OK: see the table');
  if (!ok) {
    const sample = [...final.stuck, ...final.duplicates, ...final.broken].slice(0, 5);
    for (const id of sample) console.log(id, final.facts.get(id)?.status, final.facts.get(id)?.events);
  }
  return ok;
}

function pick(env: NodeJS.ProcessEnv, pattern: RegExp): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k, v]) => pattern.test(k) && v !== undefined)) as Record<string, string>;
}

async function cleanup() {
  redisProxy?.unblock();
  await pgProxy?.up().catch(() => {}); // a cut must not outlive the run (the service stops faster with PostgreSQL)
  await service?.stop('SIGTERM', 40_000).catch(() => {});
  await redisProxy?.close();
  await pgProxy?.close().catch(() => {});
  await infra?.dispose().catch((error) => console.error('cleanup failed:', error));
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    say(`${signal}: stopping`);
    await cleanup();
    process.exit(130);
  });
}

const hardLimit = setTimeout(async () => {
  say(`hard limit of ${HARD_LIMIT_MS / 1000}s reached: stopping`);
  await cleanup();
  process.exit(2);
}, HARD_LIMIT_MS);

main()
  .then(async (ok) => {
    clearTimeout(hardLimit);
    await cleanup();
    process.exit(ok ? 0 : 1);
  })
  .catch(async (error) => {
    console.error(error);
    clearTimeout(hardLimit);
    await cleanup();
    process.exit(1);
  });
