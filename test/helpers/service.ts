// Starts real Tasklane processes (`npm start`'s supervisor, or single roles) on loopback
// with a free port, and stops them by pid.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestInfra } from './infra.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const SCRIPTS = {
  start: 'src/cli/start.ts',
  api: 'src/cli/api.ts',
  worker: 'worker/index.ts',
  key: 'src/cli/key.ts',
} as const;

export interface RunningProcess {
  child: ChildProcess;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** Resolves with the first output line matching `pattern`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGTERM (or `signal`), then waits for the exit. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

export function testEnv(infra: TestInfra, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: infra.databaseUrl,
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    REDIS_PREFIX: infra.redisPrefix,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'info',
    WORKERS: '2',
    // Tests share a busy machine with unrelated CPU-bound processes; lowered-priority
    // workers would starve behind them. Priority is tested on its own (worker-priority test).
    WORKER_NICE: '0',
    ...infra.storageEnv,
    ...extra,
  };
}

export function startProcess(script: string, env: NodeJS.ProcessEnv, args: string[] = []): RunningProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    for (const waiter of [...waiters]) {
      const match = output.match(waiter.pattern);
      if (match) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(match);
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    exited,
    output: () => output,
    waitFor(pattern, timeoutMs = 60_000) {
      const match = output.match(pattern);
      if (match) return Promise.resolve(match);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; output:\n${output.slice(-3000)}`)), timeoutMs);
        waiters.push({
          pattern,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
        exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`process exited (${code}) before ${pattern}; output:\n${output.slice(-3000)}`));
        });
      });
    },
    async stop(signal = 'SIGTERM', timeoutMs = 40_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export interface Service extends RunningProcess {
  url: string;
}

/**
 * `npm start` (supervisor + API + workers), resolved once the API listens and (up to 15 s)
 * its workers are ready; `workersReady: false` resolves without waiting for the workers (a
 * deployment started while Redis is down: they cannot be ready).
 */
export async function startService(
  infra: TestInfra,
  extra: Record<string, string> = {},
  script: string = SCRIPTS.start,
  { workersReady = true }: { workersReady?: boolean } = {},
): Promise<Service> {
  const proc = startProcess(script, testEnv(infra, extra));
  let port: string;
  try {
    // Generous: a loaded machine can take long to compile and start the processes.
    [, port] = await proc.waitFor(/"port":(\d+)[^\n]*api listening/, 120_000);
  } catch (error) {
    await proc.stop(); // never leave a half-started service behind
    throw error;
  }
  if (script === SCRIPTS.start && workersReady) {
    const workers = Number(extra.WORKERS ?? 2);
    for (let i = 0; i < 60 && (proc.output().match(/worker ready/g)?.length ?? 0) < workers; i++) {
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  return { ...proc, url: `http://127.0.0.1:${port}` };
}
