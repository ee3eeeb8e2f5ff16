// Uploads stream from the request into the blob store (issue #10, the bytes path), against
// real `npm start` processes over HTTP, on either store:
//  - the blob write starts while the client is still sending (so the API never held the
//    upload whole), and what is stored is the whole image, byte for byte;
//  - a client that disconnects mid-upload, a body that passes MAX_UPLOAD_BYTES while its file
//    streams, and a second file after a complete first one leave nothing: no blob, no row.
// "The store is being written" is observed from outside the API: on disk the size of the
// store's temp files, on s3 the bytes a TCP proxy in front of the S3 server passed on.
// Timing is bench/'s business (peak RSS with 4 uploads of 25 MiB in flight).
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { until } from './helpers/client.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { tcpProxy, type TcpProxy } from './helpers/outage.ts';
import { postChunks } from './helpers/security-clients.ts';
import { startService, type Service } from './helpers/service.ts';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 180_000 });

const MiB = 1024 * 1024;
const MAX_UPLOAD_BYTES = 8 * MiB;
/** The S3 store's multipart part size (src/storage/s3.ts): its first PUT of a part starts at this many bytes. */
const S3_PART_BYTES = 5 * MiB;
const BOUNDARY = 'streaming-test-boundary';

let infra: TestInfra;
let service: Service;
let key: string;
/** On s3, in front of the S3 server: what it forwarded is what reached the store. */
let proxy: TcpProxy | null = null;
/** ~6.3 MB: more than one S3 part. */
let image: Buffer;
/** ~8.8 MB: more than MAX_UPLOAD_BYTES. */
let oversize: Buffer;

/** A JPEG of random pixels: it compresses to ~2.9 bytes a pixel, whatever the encoder. */
const noiseJpeg = (width: number, height: number) =>
  sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } }).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer();

beforeAll(async () => {
  infra = await createInfra('upload-streaming');
  [image, oversize] = await Promise.all([noiseJpeg(1800, 1200), noiseJpeg(2000, 1500)]);
  expect(image.byteLength).toBeGreaterThan(S3_PART_BYTES + 512 * 1024);
  expect(image.byteLength).toBeLessThan(MAX_UPLOAD_BYTES);
  expect(oversize.byteLength).toBeGreaterThan(MAX_UPLOAD_BYTES);
  if (infra.storageKind === 's3') proxy = await tcpProxy(Number(new URL(infra.storageEnv.S3_ENDPOINT).port));
  service = await startService(infra, {
    WORKERS: '1',
    MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
    ...(proxy ? { S3_ENDPOINT: `http://127.0.0.1:${proxy.port}` } : {}),
  });
  key = await infra.createKey('streamer');
});

afterAll(async () => {
  await service?.stop();
  await proxy?.close();
  await infra?.dispose();
});

/** Bytes the store has taken in so far: disk, its temp files (puts in progress); s3, what reached the server. */
async function storeIntake(): Promise<number> {
  if (proxy) return proxy.forwarded();
  const tmp = path.join(new URL(infra.storageEnv.STORAGE_URL).pathname, '.tmp');
  const names = await fs.readdir(tmp).catch(() => [] as string[]);
  const sizes = await Promise.all(names.map((name) => fs.stat(path.join(tmp, name)).then((s) => s.size, () => 0)));
  return sizes.reduce((sum, size) => sum + size, 0);
}

/** Files left in the disk store's temp area (s3: none to see; an aborted multipart upload is not an object). */
async function tempFiles(): Promise<string[]> {
  if (proxy) return [];
  return fs.readdir(path.join(new URL(infra.storageEnv.STORAGE_URL).pathname, '.tmp')).catch(() => []);
}

const counts = async () => (await infra.sql(`SELECT (SELECT count(*)::int FROM "Task") AS tasks, (SELECT count(*)::int FROM "Image") AS images`))[0];
const notStored = () => service.output().match(/upload not stored/g)?.length ?? 0;

const OPERATIONS = JSON.stringify({
  query: 'mutation ($input: CreateTaskInput!) { createTask(input: $input) { __typename ... on Task { id } ... on Error { message } } }',
  variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: null, resize: { width: 64 } } },
});
const textPart = (name: string, value: string) => `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
const filePart = (name: string) => `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"; filename="noise.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`;
const PREAMBLE = textPart('operations', OPERATIONS) + textPart('map', JSON.stringify({ 0: ['variables.input.image'] })) + filePart('0');
const END = `\r\n--${BOUNDARY}--\r\n`;

interface Reply {
  status: number;
  body: string;
}

/** A POST whose body the test writes piece by piece (chunked: no Content-Length), and may cut off. */
function openUpload(route: string) {
  const request = http.request(`${service.url}${route}`, {
    method: 'POST',
    agent: false, // its own connection: one answered early is closed by the server
    headers: { authorization: `Bearer ${key}`, 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
  });
  const reply = new Promise<Reply>((resolve, reject) => {
    request.on('response', (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode!, body }));
      response.on('error', reject);
    });
    request.on('error', reject);
  });
  reply.catch(() => {}); // a cut-off request has no reply; the tests that expect one await it
  return {
    reply,
    /** Resolves once the piece is handed to the socket (or the socket is gone: the server may stop reading). */
    write: (piece: string | Uint8Array) => new Promise<void>((resolve) => request.write(piece, () => resolve())),
    end: (piece?: string | Uint8Array) => request.end(piece),
    cut: () => request.destroy(),
  };
}

async function graphql(query: string, variables: Record<string, unknown>) {
  const response = await fetch(`${service.url}/graphql`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as { data: Record<string, any> };
}

/** A head, a file cut into 64 KiB pieces, a tail. */
function* pieces(head: string, file: Uint8Array, tail: string) {
  yield Buffer.from(head);
  for (let offset = 0; offset < file.byteLength; offset += 64 * 1024) yield file.subarray(offset, offset + 64 * 1024);
  yield Buffer.from(tail);
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('an upload streams into the store', () => {
  it('starts writing the blob while the client is still sending, and stores the whole image byte for byte', async () => {
    const intake = await storeIntake();
    const upload = openUpload('/graphql');
    await upload.write(PREAMBLE);
    const held = 64 * 1024; // the last bytes stay with the client until the store has taken the rest
    await upload.write(image.subarray(0, image.byteLength - held));
    // A parser that read the whole body first would write nothing yet: this would never be met.
    await until(storeIntake, (bytes) => bytes - intake >= S3_PART_BYTES, 120_000);
    upload.end(Buffer.concat([image.subarray(image.byteLength - held), Buffer.from(END)]));
    const reply = await upload.reply;
    expect(reply.status).toBe(200);
    const created = JSON.parse(reply.body).data.createTask;
    expect(created.__typename).toBe('Task');

    const { data } = await graphql('query ($id: ID!) { task(id: $id) { ... on Task { source { url byteSize width height } } } }', { id: created.id });
    expect(data.task.source).toMatchObject({ byteSize: image.byteLength, width: 1800, height: 1200 });
    const download = await fetch(`${service.url}${data.task.source.url}`);
    expect(download.status).toBe(200);
    expect(sha256(new Uint8Array(await download.arrayBuffer()))).toBe(sha256(image));
    expect(await tempFiles()).toEqual([]);
  });

  it('a client that disconnects mid-upload leaves nothing: no blob, no row', async () => {
    const before = { counts: await counts(), blobs: await infra.blobKeys(), notStored: notStored() };
    const intake = await storeIntake();
    const upload = openUpload('/graphql');
    await upload.write(PREAMBLE);
    await upload.write(image.subarray(0, image.byteLength - 64 * 1024));
    await until(storeIntake, (bytes) => bytes - intake >= S3_PART_BYTES, 120_000); // the blob write is under way
    upload.cut();
    await until(async () => notStored(), (n) => n > before.notStored, 60_000); // logged once what was written is gone
    expect(await counts()).toEqual(before.counts);
    expect(await infra.blobKeys()).toEqual(before.blobs);
    expect(await tempFiles()).toEqual([]);
  });

  it('a body that passes MAX_UPLOAD_BYTES while its file streams: 413 PAYLOAD_TOO_LARGE, nothing kept (GraphQL and REST)', async () => {
    const before = { counts: await counts(), blobs: await infra.blobKeys(), notStored: notStored() };
    // Chunked (no Content-Length), in pieces with backpressure, as a client streams a file.
    const headers = { authorization: `Bearer ${key}`, 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };
    const refused = await postChunks(`${service.url}/graphql`, headers, pieces(PREAMBLE, oversize, END));
    expect(refused.status).toBe(413);
    expect(JSON.parse(refused.body)).toEqual({
      errors: [{ message: `the request body is over the limit of ${MAX_UPLOAD_BYTES} bytes (MAX_UPLOAD_BYTES)`, extensions: { code: 'PAYLOAD_TOO_LARGE' } }],
    });
    const rest = await postChunks(
      `${service.url}/api/tasks`,
      headers,
      pieces(textPart('jobDefinition', 'IMAGE_RESIZE') + filePart('image'), oversize, `\r\n${textPart('width', '64')}--${BOUNDARY}--\r\n`),
    );
    expect(rest.status).toBe(413);
    expect(JSON.parse(rest.body)).toEqual({ error: 'PayloadTooLarge', message: `the request body is over the limit of ${MAX_UPLOAD_BYTES} bytes (MAX_UPLOAD_BYTES)` });

    await until(async () => notStored(), (n) => n >= before.notStored + 2, 60_000);
    expect(await counts()).toEqual(before.counts);
    expect(await infra.blobKeys()).toEqual(before.blobs);
    expect(await tempFiles()).toEqual([]);
  });

  it('a second file after a whole first one: 413, the first one not kept', async () => {
    const before = { counts: await counts(), blobs: await infra.blobKeys() };
    const small = await noiseJpeg(64, 64);
    const twoFiles = `${textPart('operations', OPERATIONS)}${textPart('map', JSON.stringify({ 0: ['variables.input.image'], 1: ['variables.extra'] }))}`;
    const upload = openUpload('/graphql');
    upload.end(Buffer.concat([Buffer.from(twoFiles + filePart('0')), small, Buffer.from(`\r\n${filePart('1')}`), small, Buffer.from(END)]));
    const reply = await upload.reply;
    expect(reply.status).toBe(413);
    expect(JSON.parse(reply.body)).toEqual({ errors: [{ message: 'a request may carry one file (the image); this one carries more', extensions: { code: 'PAYLOAD_TOO_LARGE' } }] });
    expect(await counts()).toEqual(before.counts);
    expect(await infra.blobKeys()).toEqual(before.blobs);
  });
});
