// (e) Memory: peak RSS of a worker (and its executor, which does the decoding) resizing
// 6000x4000 photos, and of the API while uploads of them stream in; against raw sharp
// doing the same resize alone in a fresh process.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { GraphQLClient } from './lib/client.ts';
import { photo } from './lib/images.ts';
import { createInfra, memoryOf, processName, processTree, ROOT, startService } from './lib/infra.ts';
import { doneProbe } from './lib/done-probe.ts';
import type { BenchOptions, BenchResult } from './lib/report.ts';
import { pool, round } from './lib/stats.ts';

export async function memory(options: BenchOptions): Promise<BenchResult> {
  const count = options.quick ? 4 : 16;
  const image = await photo(6000, 4000, 5);
  const file = path.join(options.workDir, 'photo-6000x4000.jpg');
  writeFileSync(file, image);
  // Baseline: one process, one core's worth (one image in flight), as one executor does.
  const raw = JSON.parse(
    execFileSync(process.execPath, ['--import', 'tsx', 'bench/raw-sharp.ts', file, String(count), '1'], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n').at(-1)!,
  ) as { peakRssMiB: number };

  const infra = await createInfra('memory');
  const service = await startService(infra);
  const probe = await doneProbe(infra.databaseUrl);
  try {
    const client = new GraphQLClient(service.url, await infra.createKey('bench'));
    const tree = () => processTree(service.pid).map((p) => ({ pid: p.pid, role: processName(p.pid) }));
    const idle = Object.fromEntries(tree().map(({ pid, role }) => [`${role}:${pid}`, memoryOf(pid).rssMiB]));
    options.log(`memory: ${count} uploads of ${(image.byteLength / 2 ** 20).toFixed(1)} MiB 6000x4000 photos`);
    // Uploads stream in 4 at a time while the workers resize the earlier ones.
    await pool(Array.from({ length: count }), 4, () => client.createTask(image, { width: 720, quality: 80 }, true));
    await probe.waitDone(count);
    const peaks = tree().map(({ pid, role }) => ({ pid, role, ...memoryOf(pid) }));
    const peakOf = (role: string) => Math.max(...peaks.filter((p) => p.role === role).map((p) => p.peakMiB));
    const api = peakOf('tasklane-api');
    const worker = peakOf('tasklane-worker');
    const executor = peakOf('tasklane-executor');
    return {
      id: 'e',
      title: `Peak memory (6000x4000 JPEG of ${(image.byteLength / 2 ** 20).toFixed(1)} MiB → 720 px)`,
      rows: [
        { metric: 'executor (resizing) peak RSS', tasklane: round(executor, 0), baseline: round(raw.peakRssMiB, 0), ratio: round(executor / raw.peakRssMiB), unit: 'MiB (vs raw sharp process)' },
        { metric: 'worker peak RSS (holds the bytes)', tasklane: round(worker, 0), unit: 'MiB' },
        { metric: 'API peak RSS, 4 uploads in flight', tasklane: round(api, 0), unit: 'MiB' },
      ],
      details: { count, imageBytes: image.byteLength, idleRssMiB: idle, peaks, raw },
      notes: [],
    };
  } finally {
    await probe.close();
    await service.stop();
    await infra.dispose();
  }
}
