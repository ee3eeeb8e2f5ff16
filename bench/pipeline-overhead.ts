// (c) Pipeline overhead: thousands of tiny tasks (64x64 JPEG → 32 px) created and run to
// DONE through the API; tasks/s and CPU ms per task across the API and workers, against
// raw bee-queue no-op jobs and raw sharp doing the same tiny resizes, measured in the same
// run. Overhead = Tasklane's CPU per task − bee-queue's CPU per job − sharp's CPU per
// resize. Target: ≤ 2 ms CPU per task of overhead.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { GraphQLClient } from './lib/client.ts';
import { doneProbe } from './lib/done-probe.ts';
import { photo } from './lib/images.ts';
import { cpuByRole, createInfra, diffRoles, REDIS_URL, ROOT, serverCpuMs, startService } from './lib/infra.ts';
import type { BenchOptions, BenchResult } from './lib/report.ts';
import { pool, round } from './lib/stats.ts';

function runJson<T>(script: string, args: string[]): T {
  const out = execFileSync(process.execPath, ['--import', 'tsx', script, ...args], { cwd: ROOT, encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').at(-1)!) as T;
}

export async function pipelineOverhead(options: BenchOptions): Promise<BenchResult> {
  const count = Number(process.env.BENCH_C_COUNT ?? (options.quick ? 200 : 2000));
  const image = await photo(64, 64, 3);
  const file = path.join(options.workDir, 'photo-64x64.jpg');
  writeFileSync(file, image);

  options.log(`raw bee-queue: ${count} no-op jobs`);
  const beePrefix = `tlbench_bee_${randomBytes(4).toString('hex')}`;
  const redisBefore = serverCpuMs().redis;
  const bee = runJson<{ jobs: number; ms: number; jobsPerSec: number; cpuMs: number }>('bench/bee-baseline.ts', [beePrefix, String(count), String(options.cores)]);
  const beeRedisMs = serverCpuMs().redis - redisBefore;
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${beePrefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  options.log(`raw sharp: ${count} tiny resizes`);
  const sharpRaw = runJson<{ ms: number; opsPerSec: number; cpuMs: number }>('bench/raw-sharp.ts', [file, String(count), String(options.cores), '32']);

  const infra = await createInfra('overhead');
  const service = await startService(infra, {}, options.profile ? ['--cpu-prof', `--cpu-prof-dir=${options.workDir}/profiles/overhead`] : []);
  const probe = await doneProbe(infra.databaseUrl);
  try {
    const client = new GraphQLClient(service.url, await infra.createKey('bench'));
    const warmup = options.quick ? 20 : 100;
    await pool(Array.from({ length: warmup }), 8, () => client.createTask(image, { width: 32 }, true));
    await probe.waitDone(warmup);
    options.log(`tasklane: ${count} tiny tasks`);
    const cpuBefore = cpuByRole(service.pid);
    const serversBefore = serverCpuMs();
    const probeBefore = probe.backendCpuMs();
    const t0 = Date.now();
    await pool(Array.from({ length: count }), 16, () => client.createTask(image, { width: 32 }, true));
    await probe.waitDone(count + warmup);
    const probeMs = probe.backendCpuMs() - probeBefore;
    const [{ last }] = await infra.sql<{ last: Date }>(`SELECT max("finishedAt") AS last FROM "Task"`);
    const serversAfter = serverCpuMs();
    const cpu = diffRoles(cpuByRole(service.pid), cpuBefore);
    const ms = last.getTime() - t0;
    const tasksPerSec = (count / ms) * 1000;
    const perTask = Object.fromEntries(Object.entries(cpu).map(([role, total]) => [role, round(total / count, 3)]));
    const ours = Object.values(cpu).reduce((a, b) => a + b, 0) / count;
    const beePerJob = bee.cpuMs / bee.jobs;
    const sharpPerOp = sharpRaw.cpuMs / count;
    const overhead = ours - beePerJob - sharpPerOp;
    // Without the probe's own polling (bench/lib/done-probe.ts).
    const postgresPerTask = (serversAfter.postgres - serversBefore.postgres - probeMs) / count;
    const redisPerTask = (serversAfter.redis - serversBefore.redis) / count;
    const notes: string[] = [];
    if (overhead > 2) {
      notes.push(
        `overhead is ${round(overhead)} ms CPU per task (target ≤ 2 ms). By process: ${JSON.stringify(perTask)}; ` +
          `PostgreSQL ${round(postgresPerTask)} ms, Redis ${round(redisPerTask)} ms per task. See the profiles (--profile) for where it goes.`,
      );
    }
    return {
      id: 'c',
      title: 'Pipeline overhead (tiny 64x64 tasks, create+run → DONE)',
      rows: [
        { metric: `${count} tasks: throughput`, tasklane: round(tasksPerSec, 0), baseline: round(bee.jobsPerSec, 0), ratio: round(tasksPerSec / bee.jobsPerSec, 3), unit: 'tasks/s (vs bee-queue jobs/s)' },
        { metric: 'CPU per task, API + workers', tasklane: round(ours, 2), baseline: round(beePerJob + sharpPerOp, 2), ratio: round(ours / (beePerJob + sharpPerOp), 1), unit: 'ms (vs bee-queue + sharp)' },
        { metric: 'overhead per task', tasklane: round(overhead, 2), unit: 'ms CPU', target: '≤ 2 ms', met: overhead <= 2 },
        { metric: 'PostgreSQL + Redis CPU per task', tasklane: round(postgresPerTask + redisPerTask, 2), baseline: round(beeRedisMs / bee.jobs, 3), unit: 'ms' },
      ],
      details: {
        count,
        tasklane: { ms, tasksPerSec, cpuMsPerTaskByProcess: perTask, postgresCpuMsPerTask: postgresPerTask, probePostgresCpuMsPerTask: probeMs / count, redisCpuMsPerTask: redisPerTask },
        beeQueue: { ...bee, cpuMsPerJob: beePerJob, redisCpuMsPerJob: beeRedisMs / bee.jobs },
        sharp: { ...sharpRaw, cpuMsPerOp: sharpPerOp },
      },
      notes,
    };
  } finally {
    await probe.close();
    await service.stop();
    await infra.dispose();
  }
}
