// What every benchmark needs around the product: a fresh database and Redis prefix,
// API keys, processes started by pid and stopped by pid, and /proc readings (CPU time,
// peak memory) of the process trees they start. No vitest: plain TypeScript.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInfra as createTestInfra, type TestInfra } from '../../test/helpers/infra.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SERVER_URL = process.env.BENCH_POSTGRES_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export type Infra = TestInfra;

/** A fresh database and Redis prefix for a benchmark (the tests' own helper), removed by dispose(). */
export function createInfra(label: string): Promise<Infra> {
  return createTestInfra(label, { kind: 'bench', serverUrl: SERVER_URL });
}

export interface Proc {
  child: ChildProcess;
  pid: number;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(timeoutMs?: number): Promise<void>;
}

const started = new Set<Proc>();

/** Runs `node --import tsx <script>` (plus `nodeArgs`) with `env`; output is kept, not shown. */
export function startProcess(script: string, env: NodeJS.ProcessEnv, nodeArgs: string[] = [], args: string[] = []): Proc {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', script, ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let output = '';
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > 2_000_000) output = output.slice(-1_000_000);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const proc: Proc = {
    child,
    pid: child.pid!,
    output: () => output,
    async waitFor(pattern, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = output.match(pattern);
        if (match) return match;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${script} exited before ${pattern}:\n${output.slice(-3000)}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern} from ${script}:\n${output.slice(-3000)}`);
        await sleep(50);
      }
    },
    async stop(timeoutMs = 30_000) {
      started.delete(proc);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
  started.add(proc);
  return proc;
}

/** Kills (by pid) whatever a failed benchmark left running. */
export async function stopAll() {
  await Promise.all([...started].map((proc) => proc.stop(5000)));
}

export interface Service extends Proc {
  url: string;
  port: number;
}

export function serviceEnv(infra: Infra, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: infra.databaseUrl,
    REDIS_URL,
    REDIS_PREFIX: infra.redisPrefix,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'warn',
    MAX_ACTIVE_TASKS_PER_KEY: '1000000',
    // The benchmarks measure the pipeline with one key; the rate limit would throttle them.
    // (The running cap does not: a key alone uses every worker.)
    RATE_LIMIT_PER_MINUTE: '0',
    ...extra,
  };
}

/**
 * `npm start` (supervisor + API + WORKERS workers; default WORKERS = cores), resolved once
 * the API listens and every worker is ready. LOG_LEVEL=info is needed to see those lines,
 * so the per-job info lines are part of what is measured (as in production).
 */
export async function startService(infra: Infra, extra: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Service> {
  const env = serviceEnv(infra, { LOG_LEVEL: 'info', ...extra });
  // BENCH_NODE_ARGS: node flags for every process of the service (A/B of V8 settings).
  const extraNodeArgs = process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const proc = startProcess('src/cli/start.ts', env, [...extraNodeArgs, ...nodeArgs]);
  const [, port] = await proc.waitFor(/"port":(\d+)[^\n]*api listening/);
  const workers = Number(env.WORKERS ?? (await import('node:os')).availableParallelism());
  const deadline = Date.now() + 60_000;
  while ((proc.output().match(/worker ready/g)?.length ?? 0) < workers) {
    if (Date.now() > deadline) throw new Error(`workers not ready:\n${proc.output().slice(-3000)}`);
    await sleep(100);
  }
  return { ...proc, port: Number(port), url: `http://127.0.0.1:${port}` };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---- /proc readings ----

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux x86-64

interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  cpuMs: number;
}

function readStat(pid: number): ProcStat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const fields = text.slice(close + 2).split(' ');
    // fields[0] = state (field 3); utime = field 14, stime = field 15
    // utime, stime, then cutime, cstime: the CPU of children already reaped (a replaced
    // executor, a closed PostgreSQL backend) stays counted in their parent.
    const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    return { pid, ppid: Number(fields[1]), comm, cpuMs: (ticks * 1000) / CLK_TCK };
  } catch {
    return null;
  }
}

/** CPU ms a process has used so far (0 once it is gone). */
export function cpuMsOf(pid: number): number {
  return readStat(pid)?.cpuMs ?? 0;
}

/** `root` and all its descendants, with their names (process.title) and CPU time so far. */
export function processTree(root: number): ProcStat[] {
  const all = readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => readStat(Number(name)))
    .filter((stat): stat is ProcStat => stat !== null);
  const byParent = new Map<number, ProcStat[]>();
  for (const stat of all) byParent.set(stat.ppid, [...(byParent.get(stat.ppid) ?? []), stat]);
  const result: ProcStat[] = [];
  const rootStat = all.find((stat) => stat.pid === root);
  if (!rootStat) return result;
  const queue = [rootStat];
  while (queue.length) {
    const next = queue.shift()!;
    result.push(next);
    queue.push(...(byParent.get(next.pid) ?? []));
  }
  return result;
}

/** Process name as `ps` shows it (process.title lands in cmdline). */
export function processName(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] || readStat(pid)?.comm || '?';
  } catch {
    return '?';
  }
}

/** CPU ms of a process tree, by role (process title): tasklane, tasklane-api, tasklane-worker, tasklane-executor. */
export function cpuByRole(root: number): Record<string, number> {
  const byRole: Record<string, number> = {};
  for (const stat of processTree(root)) {
    const role = processName(stat.pid);
    byRole[role] = (byRole[role] ?? 0) + stat.cpuMs;
  }
  return byRole;
}

export function diffRoles(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const result: Record<string, number> = {};
  for (const [role, ms] of Object.entries(after)) result[role] = ms - (before[role] ?? 0);
  return result;
}

/** VmHWM (peak RSS) and VmRSS of a process, in MiB. */
export function memoryOf(pid: number): { peakMiB: number; rssMiB: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { peakMiB: kb('VmHWM') / 1024, rssMiB: kb('VmRSS') / 1024 };
  } catch {
    return { peakMiB: 0, rssMiB: 0 };
  }
}

/** Total busy CPU ms of the whole machine (all processes: PostgreSQL and Redis included). */
export function machineCpuMs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return ((user + nice + system + irq + softirq + steal) * 1000) / CLK_TCK;
}

/** CPU ms used by PostgreSQL and Redis server processes (all of them: shared servers). */
export function serverCpuMs(): { postgres: number; redis: number } {
  let postgres = 0;
  let redis = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (!stat) continue;
    if (stat.comm.startsWith('postgres')) postgres += stat.cpuMs;
    else if (stat.comm.startsWith('redis-server')) redis += stat.cpuMs;
  }
  return { postgres, redis };
}
