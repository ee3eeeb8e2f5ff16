// (a) Resize throughput: K photos (2725x2225 JPEG → 720 px JPEG q80) uploaded through the
// API and run to DONE by `npm start` with its default workers, against raw sharp doing the
// same K resizes with every core and nothing around it. Targets (issue #10): ≥ 0.75× raw
// end to end; worker + executor CPU per image ≤ 1.15× raw sharp's; API CPU per upload
// ≤ 2 ms (beside it, a bare server that only stores the same upload: bench/upload-server.ts);
// PostgreSQL CPU per image ≤ 1 ms.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { GraphQLClient } from './lib/client.ts';
import { photo } from './lib/images.ts';
import { doneProbe } from './lib/done-probe.ts';
import { cpuByRole, createInfra, diffRoles, processTree, ROOT, serverCpuMs, startProcess, startService } from './lib/infra.ts';
import type { BenchOptions, BenchResult } from './lib/report.ts';
import { pool, round } from './lib/stats.ts';

interface RawRun {
  ms: number;
  opsPerSec: number;
  cpuMs: number;
  peakRssMiB: number;
}

function rawSharp(file: string, count: number, concurrency: number): RawRun {
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'bench/raw-sharp.ts', file, String(count), String(concurrency)], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

export async function resizeThroughput(options: BenchOptions): Promise<BenchResult> {
  const count = Number(process.env.BENCH_A_COUNT ?? (options.quick ? 16 : 300));
  const image = await photo(2725, 2225, 1);
  const file = path.join(options.workDir, 'photo-2725x2225.jpg');
  writeFileSync(file, image);

  // Baseline: the best of one image per core and two per core in one process.
  options.log(`raw sharp: ${count} resizes`);
  const raws = [options.cores, options.cores * 2].map((concurrency) => ({ concurrency, ...rawSharp(file, count, concurrency) }));
  const raw = raws.reduce((best, run) => (run.opsPerSec > best.opsPerSec ? run : best));

  options.log(`bare upload server: ${count} uploads`);
  const bareUploadCpu = await bareUploadCpuMs(image, count, options.cores * 2);

  options.log(`tasklane (default configuration): ${count} tasks through the API`);
  const main = await runTasklane(options, image, count, {}, options.profile);
  // The same with two images in flight per worker process (WORKER_CONCURRENCY=2): fills the
  // gaps each lane spends on the database and the queue between two resizes.
  options.log(`tasklane (WORKER_CONCURRENCY=2): ${count} tasks through the API`);
  const doubled = await runTasklane(options, image, count, { WORKER_CONCURRENCY: '2' }, false);
  const ratio = main.opsPerSec / raw.opsPerSec;
  const rawCpuPerImage = raw.cpuMs / count;
  const role = (name: string) => main.cpuMsPerTaskByProcess[name] ?? 0;
  const workerCpu = role('tasklane-worker') + role('tasklane-executor');
  const apiCpu = role('tasklane-api');
  const notes: string[] = [];
  if (ratio < 0.75) {
    notes.push(
      `end-to-end is ${round(ratio)}× raw (target 0.75×): per task the product spent ${JSON.stringify(main.cpuMsPerTaskByProcess)} CPU ms ` +
        `by process, PostgreSQL ${round(main.postgresCpuMsPerTask)} ms, against ${round(raw.cpuMs / count)} ms for raw sharp: ` +
        `on ${options.cores} cores every ms spent around the resize is a ms not spent resizing`,
    );
  }
  return {
    id: 'a',
    title: 'Resize throughput (2725x2225 JPEG → 720 px JPEG q80)',
    rows: [
      { metric: `${count} tasks, uploads → DONE`, tasklane: round(main.opsPerSec, 1), baseline: round(raw.opsPerSec, 1), ratio: round(ratio), unit: 'images/s', target: '≥ 0.75× raw', met: ratio >= 0.75 && main.notDone === 0 },
      { metric: 'same, WORKER_CONCURRENCY=2', tasklane: round(doubled.opsPerSec, 1), baseline: round(raw.opsPerSec, 1), ratio: round(doubled.opsPerSec / raw.opsPerSec), unit: 'images/s' },
      { metric: 'CPU per image (all our processes)', tasklane: round(main.cpuMsPerTask, 1), baseline: round(raw.cpuMs / count, 1), unit: 'ms' },
      { metric: 'worker + executor CPU per image', tasklane: round(workerCpu, 1), baseline: round(rawCpuPerImage, 1), ratio: round(workerCpu / rawCpuPerImage), unit: 'ms', target: '≤ 1.15× raw', met: workerCpu <= 1.15 * rawCpuPerImage },
      { metric: 'API CPU per upload', tasklane: round(apiCpu, 2), baseline: round(bareUploadCpu, 2), ratio: round(apiCpu / bareUploadCpu), unit: 'ms (vs a bare server storing it)', target: '≤ 2 ms', met: apiCpu <= 2 },
      { metric: 'PostgreSQL CPU per image', tasklane: round(main.postgresCpuMsPerTask, 2), unit: 'ms', target: '≤ 1 ms', met: main.postgresCpuMsPerTask <= 1 },
    ],
    details: { count, imageBytes: image.byteLength, raw: raws, bareUploadCpuMsPerUpload: bareUploadCpu, tasklane: main, workerConcurrency2: doubled },
    notes,
  };
}

/**
 * The baseline of "API CPU per upload": CPU ms per upload of bench/upload-server.ts (busboy,
 * a file written, fsync'd and renamed; nothing else), driven by the same client as the API.
 */
async function bareUploadCpuMs(image: Buffer, count: number, inFlight: number): Promise<number> {
  const server = startProcess('bench/upload-server.ts', { PATH: process.env.PATH, HOME: process.env.HOME });
  try {
    const [, port] = await server.waitFor(/listening (\d+)/);
    const client = new GraphQLClient(`http://127.0.0.1:${port}`, 'none');
    const cpu = () => processTree(server.pid).reduce((sum, stat) => sum + stat.cpuMs, 0);
    await pool(Array.from({ length: 8 }), inFlight, () => client.createTask(image, { width: 720, quality: 80 }, true));
    const before = cpu();
    await pool(Array.from({ length: count }), inFlight, () => client.createTask(image, { width: 720, quality: 80 }, true));
    return (cpu() - before) / count;
  } finally {
    await server.stop();
  }
}

async function runTasklane(options: BenchOptions, image: Buffer, count: number, env: Record<string, string>, profile: boolean) {
  const infra = await createInfra('resize');
  const service = await startService(infra, env, profile ? ['--cpu-prof', `--cpu-prof-dir=${options.workDir}/profiles/resize`] : []);
  const probe = await doneProbe(infra.databaseUrl);
  try {
    const client = new GraphQLClient(service.url, await infra.createKey('bench'));
    // Warm-up outside the measurement: the first requests compile resolvers, load codecs.
    await pool(Array.from({ length: 4 }), 2, () => client.createTask(image, { width: 720, quality: 80 }, true));
    await probe.waitDone(4);
    const cpuBefore = cpuByRole(service.pid);
    const serversBefore = serverCpuMs();
    const probeBefore = probe.backendCpuMs();
    const t0 = Date.now();
    // Uploads are sent as fast as the API takes them (2 per core in flight).
    await pool(Array.from({ length: count }), options.cores * 2, () => client.createTask(image, { width: 720, quality: 80 }, true));
    const uploadedMs = Date.now() - t0;
    await probe.waitDone(count + 4);
    const probeMs = probe.backendCpuMs() - probeBefore;
    const [{ last }] = await infra.sql<{ last: Date }>(`SELECT max("finishedAt") AS last FROM "Task"`);
    const cpu = diffRoles(cpuByRole(service.pid), cpuBefore);
    const serversAfter = serverCpuMs();
    const ms = last.getTime() - t0;
    const [{ notDone }] = await infra.sql<{ notDone: number }>(`SELECT count(*)::int AS "notDone" FROM "Task" WHERE "status" <> 'DONE'`);
    return {
      env,
      ms,
      uploadedMs,
      opsPerSec: (count / ms) * 1000,
      notDone,
      cpuMsPerTask: Object.values(cpu).reduce((a, b) => a + b, 0) / count,
      cpuMsPerTaskByProcess: Object.fromEntries(Object.entries(cpu).map(([role, total]) => [role, round(total / count)])),
      // Without the probe's own polling (bench/lib/done-probe.ts).
      postgresCpuMsPerTask: (serversAfter.postgres - serversBefore.postgres - probeMs) / count,
      probePostgresCpuMsPerTask: probeMs / count,
      redisCpuMsPerTask: (serversAfter.redis - serversBefore.redis) / count,
    };
  } finally {
    await probe.close();
    await service.stop();
    await infra.dispose();
  }
}

