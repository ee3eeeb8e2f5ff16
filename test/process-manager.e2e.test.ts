// `npm start` under a process manager (or a terminal): whatever stops the npm process —
// SIGTERM and SIGINT sent to npm alone (what systemd, supervisord, a container runtime or
// `kill` do), SIGHUP (the terminal closed) — stops every process of the deployment
// gracefully: the supervisor, the API (drained) and the workers (their running jobs handed
// back), executors included. Nothing may be left running as an orphan.
//
// What npm 11 does (seen here, see src/stop-signals.ts): it forwards SIGINT and SIGTERM to its
// own child only, and dies of SIGHUP without telling anyone.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { client, until } from './helpers/client.ts';
import { descendants, running, taskFacts } from './helpers/faults.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { ROOT, testEnv } from './helpers/service.ts';
import { submit } from './helpers/tasks.ts';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 120_000 });

/** About four seconds of AVIF encoding: still running when the signal comes. */
const HEAVY = { width: 1024, format: 'AVIF' };

let infra: TestInfra;
let image: Buffer;
/** Every pid a test saw, killed in afterAll should a test fail half-way. */
const seen = new Set<number>();

beforeAll(async () => {
  [infra, image] = await Promise.all([createInfra('procmgr'), photo(1024, 1024)]);
});

afterAll(async () => {
  for (const pid of seen) if (running(pid)) process.kill(pid, 'SIGKILL');
  await infra?.dispose();
});

interface NpmStart {
  npm: ChildProcess;
  output(): string;
  url: string;
}

/** `npm start` as a process manager runs it: its own session, output to a pipe. */
async function npmStart(): Promise<NpmStart> {
  const env = {
    ...testEnv(infra, { WORKERS: '2', SHUTDOWN_GRACE_MS: '500', LEASE_MS: '2000', RECONCILE_INTERVAL_MS: '250' }),
    npm_config_update_notifier: 'false',
  };
  const npm = spawn('npm', ['start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  seen.add(npm.pid!);
  let output = '';
  npm.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  npm.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const [, port] = await until(
    async () => output.match(/"port":(\d+)[^\n]*api listening/),
    (m) => m !== null,
    120_000,
  ).then((m) => m!);
  await until(async () => output.match(/worker ready/g)?.length ?? 0, (n) => n >= 2, 60_000);
  return { npm, output: () => output, url: `http://127.0.0.1:${port}` };
}

const count = (text: string, pattern: RegExp) => text.match(new RegExp(pattern, 'g'))?.length ?? 0;

describe('npm start stops entirely and gracefully', () => {
  it.each(['SIGTERM', 'SIGINT', 'SIGHUP'] as const)('when npm gets %s', async (signal) => {
    const service = await npmStart();
    const tree = descendants(service.npm.pid!);
    for (const { pid } of tree) seen.add(pid);
    // The supervisor, the API, two workers and their executors: all of them must go.
    expect(tree.length, JSON.stringify(tree)).toBeGreaterThanOrEqual(4);

    const alice = client(service.url, await infra.createKey(`alice-${signal}`));
    const taskId = await submit(alice, image, HEAVY);
    await until(() => taskFacts(infra.sql, [taskId]), (f) => f.get(taskId)?.status === 'RUNNING', 120_000, 50);

    process.kill(service.npm.pid!, signal);
    const gone = await until(
      async () => tree.filter(({ pid }) => running(pid)),
      (left) => left.length === 0,
      30_000,
      100,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\nstill running after ${signal} to npm: ${JSON.stringify(tree.filter(({ pid }) => running(pid)))}\n${service.output().slice(-4000)}`);
    });
    expect(gone).toEqual([]);

    const log = service.output();
    // A clean shutdown, not deaths: the supervisor saw it, every child drained or handed back.
    expect(log).toMatch(/stopping all processes/);
    expect(log).toMatch(/api server closed/);
    expect(count(log, /worker shutting down/)).toBe(2);
    expect(log).toMatch(/job handed back for shutdown/);
    expect(log).toMatch(/all processes stopped/);
    expect(log).not.toMatch(/shutdown took too long|exited; restarting|"level":(50|60)/);
    // The task was handed back (QUEUED, attempt not spent), not left RUNNING.
    const task = (await taskFacts(infra.sql, [taskId])).get(taskId)!;
    expect(task.status).toBe('QUEUED');
    expect(task.events).toContain('QUEUED: handed back by a worker shutting down');
    await infra.sql(`UPDATE "Task" SET status = 'DELETED' WHERE id = $1`, [taskId]); // out of the next run's way
  });
});
