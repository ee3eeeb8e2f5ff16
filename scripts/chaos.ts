// `npm run chaos`: a bounded, self-stopping chaos run on this machine. Starts its own
// deployment (`npm start`: supervisor, API, WORKERS workers) on a fresh database and a fresh
// REDIS_PREFIX, submits CHAOS_TASKS tasks through the API over CHAOS_SECONDS while injecting
// faults in turn — SIGKILL a worker mid-job, delete every Redis key of the deployment,
// CLIENT KILL its Redis connections, pg_terminate_backend its PostgreSQL sessions, restart
// the whole service (SIGTERM, start again), cut Redis off for CHAOS_CUT_SECONDS (through a
// TCP proxy the run owns) during a restart's start-up, and right after a restart before
// anything was enqueued, cut PostgreSQL off (likewise) for as long while the service starts
// and in the middle of the burst, and (CHAOS_STORAGE=s3, the default) SIGKILL the S3 blob
// store's server (an s3rver child of this run) and start it again on the same port and
// directory CHAOS_CUT_SECONDS later — then waits for every task to settle, checks that
// every image row's blob is whole (size and sha-256) and prints what happened. Talks only
// to 127.0.0.1; removes its database, keys and blobs and stops every process it started.
// Exit code 0 when nothing was lost, stuck, completed twice or left half-written.
//
//   CHAOS_TASKS (60)          tasks to submit
//   CHAOS_SECONDS (90)        length of the fault phase (one fault every CHAOS_FAULT_EVERY_MS)
//   CHAOS_FAULT_EVERY_MS (6000)
//   CHAOS_SETTLE_SECONDS (240) how long to wait for the tasks to settle afterwards
//   CHAOS_CUT_SECONDS (30)    how long a Redis or PostgreSQL cut, or the store's death, lasts
//   CHAOS_STORAGE (s3)        the deployment's blob store: s3 (its own s3rver, killed once
//                             per round) or disk (a temp directory; no store fault)
//   WORKERS (2), WORKER_NICE (0), LEASE_MS, RECONCILE_INTERVAL_MS, SHUTDOWN_GRACE_MS,
//   JOB_TIMEOUT_MS, MAX_ATTEMPTS: passed to the deployment (Tasklane's defaults otherwise).
import { createHash } from 'node:crypto';
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
import { startS3Process, type S3Process } from '../test/helpers/s3rver-process.ts';
import { createBlobStore, type BlobStore } from '../src/storage/index.ts';
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
const STORAGE = process.env.CHAOS_STORAGE ?? 's3';
if (STORAGE !== 's3' && STORAGE !== 'disk') throw new Error('CHAOS_STORAGE must be s3 or disk');
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

/** The /ready statuses seen at `url` until `untilMs` (performance.now()), every 500 ms. */
async function readyUntil(url: string, untilMs: number): Promise<Set<number | null>> {
  const seen = new Set<number | null>();
  while (performance.now() < untilMs) {
    seen.add(await readyStatus(url));
    await sleep(500);
  }
  return seen;
}

/** How long until /ready at `url` says 200 (Infinity: not within a minute). */
async function readyAgainMs(url: string): Promise<number> {
  const from = performance.now();
  while (performance.now() - from < 60_000) {
    if ((await readyStatus(url)) === 200) return performance.now() - from;
    await sleep(100);
  }
  return Infinity;
}

const secsOrNever = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : 'never');
const statuses = (seen: Set<number | null>) => [...seen].map((status) => status ?? 'no answer').join('/');

/**
 * Cuts PostgreSQL for CUT_MS (during which `during` runs, e.g. a restart), checking /ready
 * at `url` meanwhile; then measures how soon /ready says 200 again. Returns the fault's note.
 */
async function cutPostgres(url: string, during: () => Promise<void> = async () => {}): Promise<string> {
  await pgProxy!.down();
  const cutAt = performance.now();
  await during();
  const seen = await readyUntil(url, cutAt + CUT_MS);
  await pgProxy!.up();
  const backMs = await readyAgainMs(url);
  // Not listening for a moment (a process starting) is no lie; 200 while cut off would be.
  const honest = seen.has(503) && !seen.has(200) && Number.isFinite(backMs);
  pgCutsHonest.push(honest);
  return `cut ${(CUT_MS / 1000).toFixed(0)} s, /ready ${statuses(seen)} meanwhile, 200 ${secsOrNever(backMs)} after it was back`;
}
// --- end of PostgreSQL cuts

// --- The blob store's death (CHAOS_STORAGE=s3). The deployment's store is an s3rver child of
// this run: SIGKILLed mid-burst (requests in flight reset, objects it was writing possibly
// half-written on its disk), started again on the same port and directory CUT_MS later.
// Meanwhile /ready must say 503 (never 200) and an upload must be refused with
// STORAGE_UNAVAILABLE; afterwards /ready 200 again, and the tasks it caught finish.
let s3: S3Process | undefined;
/** Per death: /ready 503 and uploads refused while the store was dead, /ready 200 after. */
const storeDeathsHonest: boolean[] = [];

/** What an upload through `url` gets now: "201"-like success, or "<status> <extensions.code>". */
async function uploadAnswer(url: string, key: string, bytes: Uint8Array): Promise<string> {
  const form = new FormData();
  const query = 'mutation ($input: CreateTaskInput!) { createTask(input: $input) { __typename ... on Task { id } } }';
  form.append('operations', JSON.stringify({ query, variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: null, resize: { width: 10 } } } }));
  form.append('map', JSON.stringify({ 0: ['variables.input.image'] }));
  form.append('0', new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' }), 'probe.jpg');
  try {
    const response = await fetch(`${url}/graphql`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form, signal: AbortSignal.timeout(30_000) });
    const body = (await response.json()) as { data?: { createTask?: { __typename: string } }; errors?: { extensions?: { code?: string } }[] };
    return `${response.status} ${body.data?.createTask?.__typename ?? body.errors?.[0]?.extensions?.code ?? '?'}`;
  } catch (error) {
    return `no answer (${(error as Error).message})`;
  }
}

/** Kills the store's server, keeps it dead for CUT_MS, starts it again; returns the fault's note and when it was back. */
async function killStore(url: string, key: string, probe: Uint8Array): Promise<{ note: string; backAt: Date }> {
  const pid = s3!.pid();
  await s3!.kill();
  const killedAt = performance.now();
  const upload = await uploadAnswer(url, key, probe);
  const seen = await readyUntil(url, killedAt + CUT_MS);
  const restarting = performance.now();
  await s3!.start();
  const backAt = new Date();
  const restartMs = performance.now() - restarting;
  const backMs = await readyAgainMs(url);
  const honest = upload === '503 STORAGE_UNAVAILABLE' && seen.has(503) && !seen.has(200) && Number.isFinite(backMs);
  storeDeathsHonest.push(honest);
  return {
    note: `s3rver pid ${pid} SIGKILLed, dead ${(CUT_MS / 1000).toFixed(0)} s; an upload meanwhile: ${upload}; /ready ${statuses(seen)} meanwhile; restarted in ${(restartMs / 1000).toFixed(1)} s, /ready 200 ${secsOrNever(backMs)} after`,
    backAt,
  };
}

/**
 * Every image row's blob, read back from the store: missing or not whole (its size or
 * sha-256 not the row's) is "half-written visible". Also counts blobs no row points at: a
 * write whose row never committed, left for the orphan sweep (ORPHAN_GRACE_MS).
 */
async function auditBlobs(sql: (text: string) => Promise<Record<string, unknown>[]>, store: BlobStore) {
  const rows = await sql(`SELECT "storageKey", "byteSize", "sha256" FROM "Image" WHERE "expiredAt" IS NULL`);
  const bad: string[] = [];
  for (const row of rows) {
    const key = row.storageKey as string;
    try {
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of (await store.open(key)).stream) {
        hash.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
      }
      if (bytes !== row.byteSize || hash.digest('hex') !== row.sha256) bad.push(`${key}: ${bytes} bytes, not the row's`);
    } catch (error) {
      bad.push(`${key}: ${(error as Error).message}`);
    }
  }
  const referenced = new Set(rows.map((row) => row.storageKey as string));
  let orphans = 0;
  for await (const blob of store.list()) if (!referenced.has(blob.key)) orphans++;
  return { checked: rows.length, bad, orphans };
}
// --- end of the blob store's death

type FaultKind =
  | PgFaultKind
  | 'S3 store killed and restarted'
  | 'kill -9 worker'
  | 'flush Redis keys'
  | 'CLIENT KILL'
  | 'pg_terminate_backend'
  | 'restart service'
  | 'Redis cut during start-up'
  | 'Redis cut before the first enqueue';
const FAULTS: FaultKind[] = [
  'kill -9 worker',
  ...(STORAGE === 's3' ? (['S3 store killed and restarted'] as const) : []),
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
  /** For the store's death: when it was started again. */
  backAt?: Date;
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
  let store: BlobStore = infra.blobStore;
  if (STORAGE === 's3') {
    s3 = await startS3Process();
    store = createBlobStore(s3.storage, { credentials: s3.credentials });
  }
  const env = {
    WORKERS: process.env.WORKERS ?? '2',
    WORKER_NICE: process.env.WORKER_NICE ?? '0',
    LOG_LEVEL: 'info',
    REDIS_URL: proxy.url,
    ...pick(process.env, /^(LEASE_MS|RECONCILE_INTERVAL_MS|SHUTDOWN_GRACE_MS|JOB_TIMEOUT_MS|MAX_ATTEMPTS)$/),
    ...pgEnv,
    ...(s3?.env ?? {}),
  };
  say(`database ${new URL(infra.databaseUrl).pathname.slice(1)}, REDIS_PREFIX ${infra.redisPrefix}, ${STORAGE === 's3' ? `s3 store ${s3!.endpoint}` : 'disk store'}, ${TASKS} tasks over ${CHAOS_MS / 1000}s, a fault every ${FAULT_EVERY_MS / 1000}s`);
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
      case 'S3 store killed and restarted': {
        const { note, backAt } = await killStore(service.url, key, square);
        record.note = note;
        record.backAt = backAt;
        break;
      }
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
  const blobs = await auditBlobs(sql, store);

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
  const secs = (ms: number | undefined) => (ms === undefined ? '-' : Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : 'never');
  const recovery = faults.map((fault) => {
    let worst = 0;
    for (const id of fault.inFlight.keys()) {
      const at = movedOn(id, fault.at);
      worst = Math.max(worst, at ? at.getTime() - fault.at.getTime() : Infinity);
    }
    const since = (at: Date | undefined) => (at ? at.getTime() - fault.at.getTime() : Infinity);
    // The store's death: when every task it caught had ended, counted from the store's return.
    let endedAfterBack: number | undefined;
    if (fault.backAt) {
      endedAfterBack = 0;
      for (const id of fault.inFlight.keys()) {
        const end = byTask.get(id)?.find((e) => e.at > fault.at && ['DONE', 'FAILED', 'DELETED'].includes(e.status))?.at;
        endedAfterBack = Math.max(endedAfterBack, end ? end.getTime() - fault.backAt.getTime() : Infinity);
      }
    }
    return {
      ...fault,
      note: endedAfterBack === undefined ? fault.note : `${fault.note}; every task in flight at the kill ended ${secs(endedAfterBack)} after the store was back`,
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
  const waitedForStore = new Set(events.filter((e) => /the blob store is down/.test((e.message as string | null) ?? '')).map((e) => e.taskId as string)).size;
  const lines: string[] = [];
  lines.push('| outcome | tasks |', '|---|---|');
  lines.push(`| submitted (accepted by the API) | ${accepted.length} |`);
  lines.push(`| DONE | ${done} |`);
  for (const [reason, count] of failedByReason) lines.push(`| FAILED: ${reason.replace(/\|/g, '\\|')} | ${count} |`);
  lines.push(`| lost (accepted, not in PostgreSQL) | ${final.lost.length} |`);
  lines.push(`| stuck (not DONE/FAILED ${(SETTLE_MS / 1000).toFixed(0)} s after the faults) | ${final.stuck.length} |`);
  lines.push(`| duplicate completions (>1 DONE/FAILED event) | ${final.duplicates.length} |`);
  lines.push(`| orphaned images | ${final.orphanImages} |`);
  lines.push(`| images whose blob is missing or not whole (size, sha-256), of ${blobs.checked} | ${blobs.bad.length} |`);
  lines.push(`| blobs no row points at (left for the orphan sweep) | ${blobs.orphans} |`);
  lines.push(`| DONE without result / FAILED without reason | ${final.broken.length} |`);
  lines.push(`| retried at least once (attempts > 1) | ${retried} |`);
  lines.push(`| went back to the queue uncounted while the blob store was down | ${waitedForStore} |`);
  lines.push(`| submissions refused while the API restarted or a dependency was down (retried by the client) | ${refused} |`);
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
    blobs.bad.length === 0 &&
    pgCutsHonest.every(Boolean) &&
    storeDeathsHonest.every(Boolean);
  if (!pgCutsHonest.every(Boolean)) say('NOT OK: /ready was not 503 during a PostgreSQL cut, or not 200 after it');
  if (!storeDeathsHonest.every(Boolean)) say('NOT OK: while the store was dead, /ready was not 503 or an upload was not refused with STORAGE_UNAVAILABLE; or /ready not 200 after');
  for (const line of blobs.bad.slice(0, 5)) say(`blob not whole: ${line}`);
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
  await s3?.start().catch(() => {}); // likewise the store's death
  await service?.stop('SIGTERM', 40_000).catch(() => {});
  await s3?.close().catch(() => {});
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
