// (g) Memory against image size: peak RSS of the API while 4 uploads are in flight, and of
// a worker (and its executor) resizing them, for 3 MiB and 25 MiB images, on the disk store
// and on an S3 store (an s3rver this benchmark starts). Uploads streamed to the store keep
// the API's memory independent of the image size; an executor that reads and writes files
// keeps its own independent too. Each size gets a fresh service (VmHWM is a peak since start).
import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { startS3 } from '../test/helpers/s3rver.ts';
import { GraphQLClient } from './lib/client.ts';
import { createInfra, memoryOf, processName, processTree, startService } from './lib/infra.ts';
import { doneProbe } from './lib/done-probe.ts';
import type { BenchOptions, BenchResult, Row } from './lib/report.ts';
import { round } from './lib/stats.ts';

const MiB = 2 ** 20;
const IN_FLIGHT = 4;

/** A JPEG of random pixels of about `bytes` (noise compresses to ~2.9 bytes a pixel at q100, 4:4:4). */
async function noiseJpeg(bytes: number): Promise<Buffer> {
  const encode = (pixels: number) => {
    const width = Math.round(Math.sqrt(pixels * 1.5));
    const height = Math.round(pixels / width);
    return sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } })
      .jpeg({ quality: 100, chromaSubsampling: '4:4:4' })
      .toBuffer();
  };
  const probe = await encode(bytes / 2.9);
  return encode((bytes / 2.9) * (bytes / probe.byteLength)); // one correction step: within ~1%
}

interface Measure {
  store: 'disk' | 's3';
  imageMiB: number;
  apiIdleMiB: number;
  apiPeakMiB: number;
  workerPeakMiB: number;
  executorPeakMiB: number;
}

async function measure(image: Buffer, store: 'disk' | 's3', log: (message: string) => void): Promise<Measure> {
  const infra = await createInfra('upload-memory');
  const s3 = store === 's3' ? await startS3({ bucket: 'bench-upload-memory' }) : null;
  const service = await startService(infra, {
    WORKERS: '1',
    WORKER_CONCURRENCY: '1',
    MAX_UPLOAD_BYTES: String(40 * MiB),
    ...(s3 ? s3.env : infra.storageEnv),
  });
  const probe = await doneProbe(infra.databaseUrl);
  try {
    const client = new GraphQLClient(service.url, await infra.createKey('bench'));
    const tree = () => processTree(service.pid).map((p) => ({ pid: p.pid, role: processName(p.pid) }));
    const peakOf = (role: string) => Math.max(0, ...tree().filter((p) => p.role === role).map((p) => memoryOf(p.pid).peakMiB));
    // A small task first, so that every process has loaded what it loads on first use.
    await client.request('mutation ($id: ID!) { runTask(id: $id) { __typename } }', {
      id: await client.createTask(await sharp({ create: { width: 64, height: 64, channels: 3, background: '#888' } }).jpeg().toBuffer(), { width: 32 }, false),
    });
    await probe.waitDone(1);
    const apiIdleMiB = Math.max(0, ...tree().filter((p) => p.role === 'tasklane-api').map((p) => memoryOf(p.pid).rssMiB));
    log(`upload memory (${store}): ${IN_FLIGHT} uploads of ${(image.byteLength / MiB).toFixed(1)} MiB in flight`);
    const ids = await Promise.all(Array.from({ length: IN_FLIGHT }, () => client.createTask(image, { width: 720, quality: 80 }, false)));
    const apiPeakMiB = peakOf('tasklane-api');
    for (const id of ids) await client.request('mutation ($id: ID!) { runTask(id: $id) { __typename } }', { id });
    await probe.waitDone(1 + IN_FLIGHT);
    const [{ done }] = await infra.sql(`SELECT count(*)::int AS done FROM "Task" WHERE status = 'DONE'`);
    if (done !== 1 + IN_FLIGHT) throw new Error(`only ${done} of ${1 + IN_FLIGHT} tasks are DONE`);
    return {
      store,
      imageMiB: image.byteLength / MiB,
      apiIdleMiB,
      apiPeakMiB,
      workerPeakMiB: peakOf('tasklane-worker'),
      executorPeakMiB: peakOf('tasklane-executor'),
    };
  } finally {
    await probe.close();
    await service.stop();
    await s3?.close();
    await infra.dispose();
  }
}

export async function uploadMemory(options: BenchOptions): Promise<BenchResult> {
  const sizes = options.quick ? [3 * MiB] : [3 * MiB, 25 * MiB];
  const images = await Promise.all(sizes.map(noiseJpeg));
  const measures: Measure[] = [];
  for (const store of ['disk', 's3'] as const) for (const image of images) measures.push(await measure(image, store, options.log));
  const rows: Row[] = [];
  for (const store of ['disk', 's3'] as const) {
    const of = measures.filter((m) => m.store === store);
    const figures = (pick: (m: Measure) => number) => of.map((m) => round(pick(m), 0)).join(' / ');
    const sizesLabel = of.map((m) => `${m.imageMiB.toFixed(1)}`).join(' / ');
    rows.push(
      { metric: `${store}: API peak RSS, ${IN_FLIGHT} uploads in flight (images of ${sizesLabel} MiB)`, tasklane: figures((m) => m.apiPeakMiB), baseline: figures((m) => m.apiIdleMiB), unit: 'MiB (baseline: API RSS before)' },
      { metric: `${store}: worker peak RSS resizing them`, tasklane: figures((m) => m.workerPeakMiB), unit: 'MiB' },
      { metric: `${store}: executor peak RSS resizing them`, tasklane: figures((m) => m.executorPeakMiB), unit: 'MiB' },
    );
  }
  return {
    id: 'g',
    title: `Peak memory against image size (noise JPEGs → 720 px, ${IN_FLIGHT} uploads in flight, 1 worker)`,
    rows,
    details: { measures },
    notes: [],
  };
}
