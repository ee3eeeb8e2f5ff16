// `npm run submit` on real images against the running service: exit codes, the saved
// file's size and format, the progress bar, and that progress comes from the
// subscription (the CLI makes exactly two GraphQL requests: create, subscribe).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { tcpProxy } from './helpers/outage.ts';
import { parsePrometheus } from './helpers/prometheus.ts';
import { ROOT, startService, type Service } from './helpers/service.ts';

let infra: TestInfra;
let service: Service;
let key: string;
let dir: string;
let photoPath: string;
let brokenPath: string;

beforeAll(async () => {
  infra = await createInfra('cli');
  dir = mkdtempSync(path.join(os.tmpdir(), 'tasklane-cli-'));
  const [started, jpeg] = await Promise.all([startService(infra, { WORKERS: '1' }), photo(1600, 1200)]);
  service = started;
  key = await infra.createKey('cli');
  photoPath = path.join(dir, 'photo.jpg');
  brokenPath = path.join(dir, 'broken.jpg');
  await writeFile(photoPath, jpeg);
  await writeFile(brokenPath, jpeg.subarray(0, Math.floor(jpeg.byteLength / 2)));
});

afterAll(async () => {
  await service?.stop();
  await infra?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `npm run -s submit -- …` as a person would type it, from `cwd`. */
function submit(args: string[], env: Record<string, string | undefined> = {}, cwd = dir): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn('npm', ['run', '-s', '--prefix', ROOT, 'submit', '--', ...args], {
      cwd,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, TASKLANE_URL: service.url, TASKLANE_KEY: key, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

async function graphqlRequests(): Promise<number> {
  const metrics = parsePrometheus(await (await fetch(`${service.url}/metrics`)).text());
  return metrics.sum('tasklane_http_request_duration_seconds_count', { route: '/graphql' });
}

describe('npm run submit', () => {
  it('creates and runs a task, shows progress, saves the result and exits 0', async () => {
    const before = await graphqlRequests();
    const out = path.join(dir, 'result.webp');
    const run = await submit([photoPath, '--width', '720', '--format', 'webp', '--out', 'result.webp']);
    expect(run.stderr).toMatch(/task [0-9a-f-]{36} QUEUED/);
    expect(run.code, run.stderr).toBe(0);
    // The bar, one line per change when stderr is not a terminal, ending full.
    expect(run.stderr).toMatch(/\[#{30}\] 100% DONE/);
    const match = /^(\S+)\t(\d+)x(\d+) WEBP (\d+) bytes\ttask (\S+)$/m.exec(run.stdout);
    expect(match, run.stdout).not.toBeNull();
    const [, saved, width, height, reported, id] = match!;
    expect(saved).toBe(out);
    expect([width, height]).toEqual(['720', '540']);
    const bytes = statSync(out).size;
    expect(Number(reported)).toBe(bytes);
    expect(await sharp(out).metadata()).toMatchObject({ format: 'webp', width: 720, height: 540 });

    // Same size as the task's result image in the service.
    const task = await fetch(`${service.url}/api/tasks/${id}`, { headers: { authorization: `Bearer ${key}` } });
    const { resultUrl } = await task.json();
    const head = await fetch(`${service.url}${resultUrl}`, { method: 'HEAD' });
    expect(Number(head.headers.get('content-length'))).toBe(bytes);

    // Driven by the subscription, not by polling: one createTask, one taskUpdated stream.
    expect(await graphqlRequests()).toBe(before + 2);
  }, 120_000);

  it('names the output after the input, in the directory it was run from', async () => {
    const run = await submit([path.basename(photoPath), '--height', '100', '--format', 'png']);
    expect(run.code, run.stderr).toBe(0);
    const out = path.join(dir, 'photo.resized.png');
    expect(existsSync(out)).toBe(true);
    expect(await sharp(out).metadata()).toMatchObject({ format: 'png', width: 133, height: 100 });
  });

  it('exits 1 with the error when the task FAILS, saving nothing', async () => {
    const out = path.join(dir, 'never.jpg');
    const run = await submit([brokenPath, '--width', '100', '--out', out]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/task [0-9a-f-]{36} FAILED: cannot process image/);
    expect(existsSync(out)).toBe(false);
  });

  it('exits 2 for input the service refuses, a missing file, a missing key or bad usage', async () => {
    const cases: [string[], Record<string, string | undefined>, RegExp][] = [
      [[photoPath, '--width', '0'], {}, /InvalidInput: width must be an integer from 1 to 16384, got 0 \(resize\.width\)/],
      [[photoPath, '--width', 'wide'], {}, /--width must be a whole number/],
      [[path.join(dir, 'nope.jpg'), '--width', '10'], {}, /cannot read .*nope\.jpg: ENOENT/],
      [[photoPath, '--width', '10'], { TASKLANE_KEY: undefined }, /set TASKLANE_KEY/],
      [[photoPath, '--width', '10'], { TASKLANE_KEY: 'tl_wrong' }, /UNAUTHENTICATED/],
      [[photoPath, '--bogus'], {}, /Unknown option '--bogus'/],
      [[brokenPath.replace('broken.jpg', '')], {}, /cannot read|EISDIR/],
    ];
    for (const [args, env, message] of cases) {
      const run = await submit(args, env);
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toMatch(message);
    }
    const svg = path.join(dir, 'image.svg');
    await writeFile(svg, '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
    const refused = await submit([svg, '--width', '10']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^InvalidImage: /m);
  }, 300_000);

  it('retries a create whose answer was lost with the same idempotency key: one task, DONE and saved', async () => {
    const retryKey = await infra.createKey('cli-retry');
    const proxy = await tcpProxy(Number(new URL(service.url).port));
    proxy.loseNextAnswer();
    try {
      const out = path.join(dir, 'retried.webp');
      const run = await submit([photoPath, '--width', '320', '--format', 'webp', '--out', out], { TASKLANE_URL: `http://127.0.0.1:${proxy.port}`, TASKLANE_KEY: retryKey });
      expect(run.code, run.stderr).toBe(0);
      expect(proxy.answersLost()).toBe(1); // the first answer never reached the CLI
      const retried = /^cannot reach .*; trying again in 0\.5 s \(idempotency key ([0-9a-f-]{36})\)$/m.exec(run.stderr);
      expect(retried, run.stderr).not.toBeNull();
      expect(await sharp(out).metadata()).toMatchObject({ format: 'webp', width: 320 });
      // The first try made the task; the retry was answered with it: one task, under the CLI's key.
      const tasks = await infra.sql(`SELECT t."id", k."key" FROM "Task" t LEFT JOIN "IdempotencyKey" k ON k."taskId" = t."id" WHERE t."ownerId" = 'cli-retry'`);
      expect(tasks).toEqual([{ id: expect.any(String), key: retried![1] }]);
      expect(run.stdout).toContain(`task ${tasks[0].id}`);
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it('exits 3 when the service cannot be reached', async () => {
    const run = await submit([photoPath, '--width', '10'], { TASKLANE_URL: 'http://127.0.0.1:9' });
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:9\/graphql/);
  });
});
