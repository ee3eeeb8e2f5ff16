// (f) Security: what refusing each attack costs, against what the attack would cost
// without the limit (or against an ordinary request). Figures quoted in SECURITY.md.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parse, specifiedRules, validate, getIntrospectionQuery } from 'graphql';
import sharp from 'sharp';
import { Redis } from 'ioredis';
import { pngBomb } from '../test/helpers/images.ts';
import { createInfra, memoryOf, processName, processTree, REDIS_URL, ROOT, startService } from './lib/infra.ts';
import type { BenchOptions, BenchResult, Row } from './lib/report.ts';
import { round, summarize } from './lib/stats.ts';

const CREATE = `mutation ($input: CreateTaskInput!) {
  createTask(input: $input) { __typename ... on Task { id } ... on Error { message } }
}`;

async function upload(url: string, key: string, bytes: Uint8Array): Promise<{ ms: number; typename: string }> {
  const form = new FormData();
  form.append('operations', JSON.stringify({ query: CREATE, variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: null, resize: { width: 8 } } } }));
  form.append('map', JSON.stringify({ 0: ['variables.input.image'] }));
  form.append('0', new Blob([bytes as Uint8Array<ArrayBuffer>]), 'photo.png');
  const started = performance.now();
  const response = await fetch(`${url}/graphql`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
  const body = (await response.json()) as { data?: { createTask: { __typename: string } } };
  return { ms: performance.now() - started, typename: body.data?.createTask.__typename ?? JSON.stringify(body) };
}

/** Streams `totalMiB` of multipart body without a Content-Length; resolves at the answer. */
function oversize(url: string, key: string, totalMiB: number): Promise<{ ms: number; status: number; sentMiB: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let sent = 0;
    let answered = false;
    const request = http.request(`${url}/graphql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'multipart/form-data; boundary=bb' },
    });
    request.on('response', (response) => {
      answered = true;
      const ms = performance.now() - started;
      response.resume();
      response.on('end', () => resolve({ ms, status: response.statusCode!, sentMiB: sent / 2 ** 20 }));
    });
    request.on('error', (error) => !answered && reject(error));
    const chunk = Buffer.alloc(64 * 1024, 0x55);
    // A well-formed upload (operations, map, then the file) whose file starts like a JPEG:
    // the API streams it towards the store until it passes MAX_UPLOAD_BYTES. (A file that is
    // plainly no image is refused as InvalidImage after its first bytes, before any limit.)
    const operations = JSON.stringify({
      query: 'mutation ($f: File!) { createTask(input: {jobDefinition: IMAGE_RESIZE, image: $f, resize: {width: 8}}) { __typename } }',
      variables: { f: null },
    });
    request.write(
      `--bb\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${operations}\r\n` +
        `--bb\r\nContent-Disposition: form-data; name="map"\r\n\r\n{"0":["variables.f"]}\r\n` +
        `--bb\r\nContent-Disposition: form-data; name="0"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
    );
    request.write(Buffer.from([0xff, 0xd8, 0xff]));
    const pump = () => {
      while (!answered && sent < totalMiB * 2 ** 20) {
        sent += chunk.byteLength;
        if (!request.write(chunk)) return void request.once('drain', pump);
      }
      if (!answered) request.end('\r\n--bb--\r\n');
    };
    pump();
  });
}

function timeEach(n: number, work: () => void): number {
  const started = performance.now();
  for (let i = 0; i < n; i++) work();
  return ((performance.now() - started) * 1000) / n; // µs
}

export async function security(options: BenchOptions): Promise<BenchResult> {
  const n = options.quick ? 5 : 30;
  const bomb = pngBomb(12_000, 12_000, true);
  const bombFile = path.join(options.workDir, 'bomb-12000x12000-interlaced.png');
  writeFileSync(bombFile, bomb);
  const rows: Row[] = [];
  const details: Record<string, unknown> = {};

  // Worker side, in a fresh process each: the executor's pipeline with and without the limit.
  const decode = (limit: number) =>
    JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', 'bench/security-decode.ts', bombFile, String(limit)], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n').at(-1)!) as {
      ms: number;
      peakRssMiB: number;
      growthMiB: number;
      refused: string | null;
    };
  options.log('security: decoding the bomb in a worker pipeline, with and without the pixel limit');
  const limited = decode(50_000_000);
  const unlimited = options.quick ? limited : decode(1_000_000_000);
  details.workerDecode = { limited, unlimited };
  rows.push({
    metric: 'bomb in a worker: refused by limitInputPixels',
    tasklane: round(limited.ms, 1),
    baseline: round(unlimited.ms, 0),
    ratio: round(limited.ms / unlimited.ms, 4),
    unit: 'ms (vs decoding it, no limit)',
  });
  rows.push({ metric: 'bomb in a worker: memory growth', tasklane: round(limited.growthMiB, 0), baseline: round(unlimited.growthMiB, 0), unit: 'MiB (vs decoding it)' });

  const infra = await createInfra('security');
  const service = await startService(infra, { WORKERS: '1' });
  try {
    const key = await infra.createKey('bench');
    const tree = () => processTree(service.pid).map((p) => ({ pid: p.pid, role: processName(p.pid) }));
    const apiPid = tree().find((p) => p.role === 'tasklane-api')!.pid;
    const small = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#468' } }).png().toBuffer();
    await upload(service.url, key, small); // warm-up
    await upload(service.url, key, bomb);

    options.log(`security: ${n} pixel bombs and ${n} small valid uploads, end to end`);
    const apiBefore = memoryOf(apiPid);
    const bombs: number[] = [];
    const valid: number[] = [];
    for (let i = 0; i < n; i++) {
      const refused = await upload(service.url, key, bomb);
      if (refused.typename !== 'InvalidImage') throw new Error(`bomb not refused: ${refused.typename}`);
      bombs.push(refused.ms);
      const stored = await upload(service.url, key, small);
      if (stored.typename !== 'Task') throw new Error(`small upload failed: ${stored.typename}`);
      valid.push(stored.ms);
    }
    const bombStats = summarize(bombs);
    const validStats = summarize(valid);
    details.bombUpload = bombStats;
    details.validUpload = validStats;
    rows.push({
      metric: 'pixel bomb (18 KB, 144 MP) upload → InvalidImage, p50',
      tasklane: bombStats.p50,
      baseline: validStats.p50,
      ratio: round(bombStats.p50 / validStats.p50),
      unit: 'ms (vs a 64x64 PNG stored)',
    });

    options.log('security: oversize chunked bodies');
    const bodies = [];
    for (let i = 0; i < Math.min(n, 10); i++) bodies.push(await oversize(service.url, key, 100));
    if (bodies.some((b) => b.status !== 413)) throw new Error(`oversize not refused: ${JSON.stringify(bodies)}`);
    details.oversize = bodies;
    rows.push({ metric: '100 MiB chunked body → 413, p50', tasklane: summarize(bodies.map((b) => b.ms)).p50, unit: 'ms' });
    rows.push({ metric: '… of which the client got to send, max', tasklane: round(Math.max(...bodies.map((b) => b.sentMiB)), 1), unit: 'MiB (limit 25)' });
    const apiAfter = memoryOf(apiPid);
    details.apiMemory = { before: apiBefore, after: apiAfter };
    rows.push({ metric: 'API RSS before → after that barrage', tasklane: `${round(apiBefore.rssMiB, 0)} → ${round(apiAfter.rssMiB, 0)}`, unit: 'MiB' });
    rows.push({ metric: 'API peak RSS before → after', tasklane: `${round(apiBefore.peakMiB, 0)} → ${round(apiAfter.peakMiB, 0)}`, unit: 'MiB' });

    // Document limits: validation with our armor rules against graphql-js' own rules alone,
    // on documents never seen before (yoga caches validation per document otherwise).
    process.env.REDIS_PREFIX = infra.redisPrefix;
    process.env.RATE_LIMIT_PER_MINUTE = '1000000';
    const { ApolloArmor } = await import('@escape.tech/graphql-armor');
    const { armorConfig, exceedsTokens } = await import('../src/http/graphql-limits.ts');
    const { schema } = await import('../src/graphql/index.ts');
    const armorRules = new ApolloArmor(armorConfig()).protect().validationRules;
    const documents = {
      'a task with images and events': `query ($id: ID!) { task(id: $id) { __typename ... on Task { id status source { url } result { url width height } events { at status } } ... on Error { message } } }`,
      'the introspection query': getIntrospectionQuery({ descriptions: true }),
    };
    const iterations = options.quick ? 200 : 2000;
    for (const [name, source] of Object.entries(documents)) {
      const document = parse(source);
      const plain = timeEach(iterations, () => validate(schema, document, specifiedRules));
      const armored = timeEach(iterations, () => validate(schema, document, [...specifiedRules, ...armorRules]));
      const tokens = timeEach(iterations, () => exceedsTokens(source, 1000));
      details[`validate:${name}`] = { plainMicros: plain, armoredMicros: armored, tokenCountMicros: tokens };
      rows.push({ metric: `validate ${name}: with armor + token count`, tasklane: round(armored + tokens, 1), baseline: round(plain, 1), ratio: round((armored + tokens) / plain), unit: 'µs (vs graphql-js rules alone)' });
    }

    // The rate limit: one EVALSHA per request, against a plain PING.
    const { takeRequest } = await import('../src/http/rate-limit.ts');
    const { closeRedis } = await import('../src/redis.ts');
    const redis = new Redis(REDIS_URL);
    const pings: number[] = [];
    const checks: number[] = [];
    await takeRequest('bench');
    for (let i = 0; i < (options.quick ? 200 : 2000); i++) {
      let t = performance.now();
      await redis.ping();
      pings.push((performance.now() - t) * 1000);
      t = performance.now();
      await takeRequest('bench');
      checks.push((performance.now() - t) * 1000);
    }
    redis.disconnect();
    await closeRedis();
    const ping = summarize(pings);
    const check = summarize(checks);
    details.rateLimit = { ping, check };
    rows.push({ metric: 'rate-limit check (Redis script), p50', tasklane: round(check.p50, 0), baseline: round(ping.p50, 0), ratio: round(check.p50 / ping.p50), unit: 'µs (vs Redis PING)' });
    rows.push({ metric: 'rate-limit check, p99', tasklane: round(check.p99, 0), baseline: round(ping.p99, 0), ratio: round(check.p99 / ping.p99), unit: 'µs (vs Redis PING)' });

    return {
      id: 'f',
      title: 'Security: the cost of refusing attacks',
      rows,
      details,
      notes: [
        'Without the limit, the interlaced 144 MP PNG is decoded whole (Adam7 cannot stream); a non-interlaced one streams through libvips with little memory but the same CPU.',
        'Armor and token figures are per document never seen before: yoga caches parse and validation per document, so a repeated query pays them once.',
      ],
    };
  } finally {
    await service.stop();
    await infra.dispose();
  }
}
