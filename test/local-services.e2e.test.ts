// `npm start` on a machine with only Node.js (and a redis-server on the PATH): with
// DATABASE_URL and REDIS_URL unset and nothing answering on the default ports, it runs an
// embedded PostgreSQL (cluster under LOCAL_SERVICES_DIR, reused by the next start) and a
// private redis-server, and stops both with itself — on SIGTERM, and when the supervisor is
// SIGKILLed. The machine's own PostgreSQL and Redis keep 5432 and 6379: the defaults point at
// free ports here (LOCAL_PG_PORT, LOCAL_REDIS_PORT), which is exactly "nothing answers".
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { client, until } from './helpers/client.ts';
import { descendants, running } from './helpers/faults.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { freePort } from './helpers/outage.ts';
import { ROOT } from './helpers/service.ts';
import { submit } from './helpers/tasks.ts';

vi.setConfig({ testTimeout: 240_000, hookTimeout: 60_000 });

let infra: TestInfra; // only for its blob store (disk, or the run's S3)
let image: Buffer;
let dir: string;
let env: NodeJS.ProcessEnv;
let pgPort: number;
let redisPort: number;
/** Every pid a test saw, SIGKILLed in afterAll should a test fail half-way. */
const seen = new Set<number>();

beforeAll(async () => {
  [infra, image, pgPort, redisPort] = await Promise.all([createInfra('local'), photo(800, 600), freePort(), freePort()]);
  dir = mkdtempSync(path.join(os.tmpdir(), 'tasklane-local-'));
  chmodSync(dir, 0o755); // run by root, the servers run as nobody, who must get in
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    // DATABASE_URL and REDIS_URL unset: the defaults, on ports where nothing answers.
    LOCAL_PG_PORT: String(pgPort),
    LOCAL_REDIS_PORT: String(redisPort),
    LOCAL_SERVICES_DIR: dir,
    HOST: '127.0.0.1',
    PORT: '0',
    WORKERS: '1',
    WORKER_NICE: '0',
    LOG_LEVEL: 'info',
    npm_config_update_notifier: 'false',
    ...infra.storageEnv,
  };
});

afterAll(async () => {
  for (const pid of seen) if (running(pid)) process.kill(pid, 'SIGKILL');
  await infra?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const uidOf = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

interface Started {
  npm: ChildProcess;
  output(): string;
  /** Settles when npm has exited and its stdout and stderr are drained: only then is the output complete. */
  closed: Promise<void>;
  url: string;
  /** The postmaster and redis-server this start runs. */
  postgresPid: number;
  redisPid: number;
}

async function npmStart(): Promise<Started> {
  const npm = spawn('npm', ['start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  seen.add(npm.pid!);
  let output = '';
  npm.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  npm.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let exited = false;
  npm.on('exit', () => (exited = true));
  const closed = new Promise<void>((resolve) => npm.on('close', () => resolve()));
  const [, port] = await until(
    async () => {
      if (exited) throw new Error(`npm start exited:\n${output.slice(-4000)}`);
      return output.match(/"port":(\d+)[^\n]*api listening/);
    },
    (m) => m !== null,
    120_000,
  ).then((m) => m!);
  const url = `http://127.0.0.1:${port}`;
  await until(() => fetch(`${url}/ready`).then((r) => r.status), (status) => status === 200, 60_000);
  await until(async () => /worker ready/.test(output), Boolean, 60_000);

  const postgresPid = Number(readFileSync(path.join(dir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
  const redis = new Redis({ host: '127.0.0.1', port: redisPort, lazyConnect: true, maxRetriesPerRequest: 1 });
  const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))![1]);
  redis.disconnect();
  for (const pid of [postgresPid, redisPid, ...descendants(npm.pid!).map(({ pid }) => pid)]) seen.add(pid);
  return { npm, output: () => output, closed, url, postgresPid, redisPid };
}

/** `npm run key -- create <name>` with the same environment: the default DATABASE_URL reaches the embedded server. */
async function createKey(name: string): Promise<string> {
  const { stdout } = await promisify(execFile)('npm', ['run', '-s', 'key', '--', 'create', name], { cwd: ROOT, env });
  return stdout.trim().split('\n').at(-1)!;
}

async function taskStatus(url: string, key: string, id: string): Promise<string | undefined> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query: 'query ($id: ID!) { task(id: $id) { ... on Task { status } } }', variables: { id } }),
  });
  return ((await response.json()) as { data?: { task?: { status?: string } } }).data?.task?.status;
}

async function allGone(pids: number[], output: () => string): Promise<void> {
  await until(async () => pids.filter(running), (left) => left.length === 0, 60_000, 100).catch((error: Error) => {
    throw new Error(`${error.message}\n${output().slice(-4000)}`);
  });
}

describe('npm start without DATABASE_URL and REDIS_URL, nothing on their ports', () => {
  let key: string;
  let taskId: string;

  it('runs an embedded PostgreSQL and a private redis-server, runs a task to DONE, and stops them on SIGTERM', async () => {
    expect(existsSync(path.join(dir, 'postgres'))).toBe(false);
    const started = await npmStart();
    expect(started.output()).toMatch(/creating the embedded PostgreSQL cluster/);
    expect(started.output()).toMatch(new RegExp(`embedded PostgreSQL \\d+ running on 127.0.0.1:${pgPort}`));
    expect(started.output()).toMatch(new RegExp(`private redis-server running on 127.0.0.1:${redisPort}`));
    const tree = descendants(started.npm.pid!).map(({ pid }) => pid);
    expect(tree).toContain(started.postgresPid);
    expect(tree).toContain(started.redisPid);
    if (process.getuid?.() === 0) {
      // PostgreSQL refuses root: both servers run as nobody.
      expect(uidOf(started.postgresPid)).not.toBe(0);
      expect(uidOf(started.redisPid)).not.toBe(0);
    }

    key = await createKey('local');
    const alice = client(started.url, key);
    taskId = await submit(alice, image, { width: 200, format: 'WEBP' });
    await until(() => taskStatus(started.url, key, taskId), (status) => status === 'DONE', 120_000);

    process.kill(started.npm.pid!, 'SIGTERM');
    await allGone([started.postgresPid, started.redisPid, ...tree], started.output);
    // A process gone is not its last lines read: the supervisor's farewell may still be in the pipe.
    await started.closed;
    expect(started.output()).toMatch(/"service":"postgres","msg":"the embedded PostgreSQL stopped"/);
    expect(started.output()).toMatch(/"service":"redis","msg":"the private redis-server stopped"/);
    expect(started.output()).toMatch(/all processes stopped/);
  });

  it('reuses the same database on the next start (the task is still there), and stops both when the supervisor is SIGKILLed', async () => {
    expect(taskId, 'the first test ran').toBeDefined();
    const started = await npmStart();
    expect(started.output()).not.toMatch(/creating the embedded PostgreSQL cluster/);
    expect(await taskStatus(started.url, key, taskId)).toBe('DONE');

    // The supervisor is npm's child (the script `exec`s node); SIGKILL leaves it no say.
    const tree = descendants(started.npm.pid!);
    const supervisor = tree.find(({ ppid }) => ppid === started.npm.pid)!;
    expect(supervisor.name).toMatch(/^tasklane\b/); // its process.title
    process.kill(supervisor.pid, 'SIGKILL');
    await allGone([started.postgresPid, started.redisPid, ...tree.map(({ pid }) => pid)], started.output);
  });
});
