// The blob store's contract (src/storage/types.ts), one behavioural suite run against both
// backends: the disk store in a temp directory, and the S3 store against a real
// S3-protocol server (s3rver) on loopback. Then each backend's own faults: an S3 server
// that is down or cut off, a disk that is read-only, full or not a directory.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import {
  BlobNotFound,
  BlobTooLarge,
  createBlobStore,
  InvalidBlobKey,
  RangeNotSatisfiable,
  StorageUnavailable,
  type BlobStore,
  type StorageConfig,
} from '../src/storage/index.ts';
import { canMount } from './helpers/disk-faults.ts';
import { tcpProxy } from './helpers/outage.ts';
import { startS3, type TestS3 } from './helpers/s3rver.ts';

const MiB = 1024 * 1024;
const TIMEOUT_MS = 5000;

interface Backend {
  store: BlobStore;
  /** How the child process of the crash test builds the same store. */
  childConfig: { storage: StorageConfig; credentials?: { accessKeyId: string; secretAccessKey: string } };
  /** Temp files of interrupted writes (disk), to prove they are cleaned up; [] for s3. */
  tempFiles(): Promise<string[]>;
  close(): Promise<void>;
}

async function diskBackend(): Promise<Backend> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklane-blobs-'));
  const storage: StorageConfig = { kind: 'disk', root };
  return {
    store: createBlobStore(storage),
    childConfig: { storage },
    tempFiles: () => fs.readdir(path.join(root, '.tmp')).catch(() => []),
    close: () => fs.rm(root, { recursive: true, force: true }),
  };
}

async function s3Backend(): Promise<Backend> {
  const s3 = await startS3({ bucket: 'tasklane-storage-test', prefix: 'suite/' });
  return {
    store: createBlobStore(s3.storage, { credentials: s3.credentials, timeoutMs: TIMEOUT_MS }),
    childConfig: { storage: s3.storage, credentials: s3.credentials },
    tempFiles: async () => [],
    close: () => s3.close(),
  };
}

/** Random bytes, and a stream of them in 64 KiB chunks that really arrive one by one. */
function payload(size: number) {
  const bytes = randomBytes(size);
  const stream = () =>
    Readable.from(
      (async function* () {
        for (let offset = 0; offset < size; offset += 64 * 1024) {
          await new Promise((resolve) => setImmediate(resolve));
          yield bytes.subarray(offset, offset + 64 * 1024);
        }
      })(),
      { objectMode: false },
    );
  return { bytes, stream, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** A body that sends `size` bytes, then waits until fail() makes it error. */
function stalledBody(size: number) {
  let sent = 0;
  let reachedEnd!: () => void;
  const stalled = new Promise<void>((resolve) => (reachedEnd = resolve));
  const stream = new Readable({
    read() {
      if (sent >= size) return reachedEnd();
      const chunk = Buffer.alloc(Math.min(64 * 1024, size - sent), 1);
      sent += chunk.length;
      this.push(chunk);
    },
  });
  return { stream, stalled, fail: () => stream.destroy(new Error('client went away')) };
}

async function read(store: BlobStore, key: string): Promise<Buffer> {
  return buffer((await store.open(key)).stream);
}

async function keys(store: BlobStore, options: Parameters<BlobStore['list']>[0] = {}): Promise<string[]> {
  const found: string[] = [];
  for await (const blob of store.list(options)) found.push(blob.key);
  return found.sort();
}

const unique = () => `t-${randomBytes(6).toString('hex')}`;

describe.each([
  ['disk', diskBackend],
  ['s3', s3Backend],
] as const)('%s store', (kind, makeBackend) => {
  let backend: Backend;
  let store: BlobStore;

  beforeAll(async () => {
    backend = await makeBackend();
    store = backend.store;
  });
  afterAll(async () => {
    await backend?.close();
  });

  it.each([
    ['0 B', 0],
    ['1 byte', 1],
    ['5.5 MiB (several S3 parts)', 5.5 * MiB],
  ])('round-trips %s streamed, byte-identical', async (_label, size) => {
    const key = `${unique()}/blob`;
    const { bytes, stream, sha256 } = payload(size);
    expect(await store.put(key, stream(), { contentType: 'image/png', maxBytes: 25 * MiB })).toEqual({ byteSize: size, sha256 });
    const opened = await store.open(key);
    expect(opened.byteSize).toBe(size);
    expect((await buffer(opened.stream)).equals(bytes)).toBe(true);
    const stat = await store.stat(key);
    expect(stat).toMatchObject({ byteSize: size, contentType: kind === 's3' ? 'image/png' : null });
    expect(Math.abs(stat!.lastModified.getTime() - Date.now())).toBeLessThan(60_000);
  });

  it('puts a Buffer, and replaces a blob as a whole', async () => {
    const key = `${unique()}/blob`;
    expect(await store.put(key, Buffer.alloc(0), { contentType: 'image/png' })).toMatchObject({ byteSize: 0 });
    expect(await read(store, key)).toEqual(Buffer.alloc(0));
    await store.put(key, Buffer.from('second version'), { contentType: 'image/png' });
    expect((await read(store, key)).toString()).toBe('second version');
  });

  it('reads ranges (ends inclusive, an end past the blob clamped) and refuses unsatisfiable ones', async () => {
    const key = `${unique()}/blob`;
    const { bytes, stream } = payload(1000);
    await store.put(key, stream(), { contentType: 'image/jpeg' });
    type Case = [{ start: number; end?: number }, number, number];
    const cases: Case[] = [
      // s3rver serves the whole object for "bytes=0-0" (it reads end 0 as "no end"); S3 does not.
      ...(kind === 'disk' ? [[{ start: 0, end: 0 }, 0, 0] satisfies Case] : []),
      [{ start: 0, end: 1 }, 0, 1],
      [{ start: 10, end: 99 }, 10, 99],
      [{ start: 900 }, 900, 999],
      [{ start: 990, end: 5000 }, 990, 999],
    ];
    for (const [range, start, end] of cases) {
      const opened = await store.open(key, { range });
      expect(opened).toMatchObject({ byteSize: 1000, range: { start, end } });
      expect((await buffer(opened.stream)).equals(bytes.subarray(start, end + 1))).toBe(true);
    }
    for (const range of [{ start: 1000 }, { start: 5000, end: 6000 }, { start: 20, end: 10 }]) {
      const error = await store.open(key, { range }).catch((e) => e);
      expect(error).toBeInstanceOf(RangeNotSatisfiable);
      expect(error.byteSize).toBe(1000);
    }
    const empty = `${unique()}/empty`;
    await store.put(empty, Buffer.alloc(0), { contentType: 'image/jpeg' });
    await expect(store.open(empty, { range: { start: 0 } })).rejects.toBeInstanceOf(RangeNotSatisfiable);
  });

  it('tells a missing blob apart: BlobNotFound to open, null to stat; delete is idempotent', async () => {
    const key = `${unique()}/blob`;
    await expect(store.open(key)).rejects.toBeInstanceOf(BlobNotFound);
    expect(await store.stat(key)).toBeNull();
    await store.delete(key); // never existed
    await store.put(key, Buffer.from('x'), { contentType: 'image/png' });
    await store.delete(key);
    await store.delete(key);
    expect(await store.stat(key)).toBeNull();
    await expect(store.open(key)).rejects.toBeInstanceOf(BlobNotFound);
    // A "directory" of the disk store is no blob either, nor is a key below a blob.
    await store.put(`${key}/inner`, Buffer.from('x'), { contentType: 'image/png' });
    expect(await store.stat(key)).toBeNull();
    await expect(store.open(key)).rejects.toBeInstanceOf(BlobNotFound);
    const below = `${key}/inner/below`;
    expect(await store.stat(below)).toBeNull();
    await expect(store.open(below)).rejects.toBeInstanceOf(BlobNotFound);
    await store.delete(below);
    expect(await keys(store, { prefix: `${below}/` })).toEqual([]);
  });

  it('lists by prefix (as a string, like S3) and by age', async () => {
    const base = unique();
    const old = [`${base}/a/1`, `${base}/a/2`, `${base}/ab`];
    for (const key of old) await store.put(key, Buffer.from(key), { contentType: 'image/png' });
    // S3 keeps modification times in whole seconds: let one pass on either side of the cutoff.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const cutoff = new Date();
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await store.put(`${base}/b/1`, Buffer.from('new'), { contentType: 'image/png' });

    expect(await keys(store, { prefix: `${base}/` })).toEqual([...old, `${base}/b/1`].sort());
    expect(await keys(store, { prefix: `${base}/a/` })).toEqual([`${base}/a/1`, `${base}/a/2`]);
    expect(await keys(store, { prefix: `${base}/a` })).toEqual([`${base}/a/1`, `${base}/a/2`, `${base}/ab`]);
    expect(await keys(store, { prefix: `${base}/zzz` })).toEqual([]);
    expect(await keys(store, { prefix: `${base}/`, olderThan: cutoff })).toEqual(old.sort());
    expect(await keys(store, { prefix: `${base}/`, olderThan: new Date(Date.now() - 3_600_000) })).toEqual([]);
    const listed = [];
    for await (const blob of store.list({ prefix: `${base}/b/` })) listed.push(blob);
    expect(listed).toEqual([{ key: `${base}/b/1`, byteSize: 3, lastModified: expect.any(Date) }]);
    // Everything listed is a blob one can open: no temp files, probes or foreign names.
    for (const key of await keys(store)) expect(await store.stat(key)).not.toBeNull();
  });

  it('refuses a body over maxBytes while streaming, leaving nothing (and the previous version intact)', async () => {
    const key = `${unique()}/blob`;
    await store.put(key, Buffer.from('previous'), { contentType: 'image/png' });
    const big = payload(6 * MiB);
    const error = await store.put(key, big.stream(), { contentType: 'image/png', maxBytes: 5.5 * MiB }).catch((e) => e);
    expect(error).toBeInstanceOf(BlobTooLarge);
    expect(error.maxBytes).toBe(5.5 * MiB);
    expect((await read(store, key)).toString()).toBe('previous');

    const fresh = `${unique()}/blob`;
    await expect(store.put(fresh, payload(100).stream(), { contentType: 'image/png', maxBytes: 99 })).rejects.toBeInstanceOf(BlobTooLarge);
    await expect(store.put(fresh, Buffer.alloc(100), { contentType: 'image/png', maxBytes: 99 })).rejects.toBeInstanceOf(BlobTooLarge);
    await expect(store.put(fresh, big.stream(), { contentType: 'image/png', maxBytes: 5.5 * MiB })).rejects.toBeInstanceOf(BlobTooLarge);
    expect(await store.stat(fresh)).toBeNull();
    expect(await keys(store, { prefix: fresh.split('/')[0] })).toEqual([]);
    expect(await backend.tempFiles()).toEqual([]);
    // Exactly maxBytes is allowed.
    expect(await store.put(fresh, Buffer.alloc(100), { contentType: 'image/png', maxBytes: 100 })).toMatchObject({ byteSize: 100 });
  });

  it('accepts only keys of [a-z0-9._-] segments: no climbing out, no absolute or hidden paths', async () => {
    const bad = ['', '/etc/passwd', '../x', 'a/../../x', 'a/./b', 'a//b', 'a/', 'A', 'a b', '.tmp/x', 'a/.hidden', 'a\\b', 'a\0b', 'é', 'x'.repeat(513)];
    for (const key of bad) {
      await expect(store.put(key, Buffer.from('x'), { contentType: 'image/png' }), key).rejects.toBeInstanceOf(InvalidBlobKey);
      await expect(store.open(key), key).rejects.toBeInstanceOf(InvalidBlobKey);
      await expect(store.stat(key), key).rejects.toBeInstanceOf(InvalidBlobKey);
      await expect(store.delete(key), key).rejects.toBeInstanceOf(InvalidBlobKey);
      expect(() => store.localPath(key), key).toThrow(InvalidBlobKey);
    }
    await expect(keys(store, { prefix: '../' })).rejects.toBeInstanceOf(InvalidBlobKey);
    const good = `${unique()}/images/ab/0f3c_d-e.webp`;
    await store.put(good, Buffer.from('ok'), { contentType: 'image/webp' });
    expect((await read(store, good)).toString()).toBe('ok');
  });

  it(kind === 'disk' ? 'hands sharp a local file path' : 'has no local file path', async () => {
    const key = `${unique()}/blob`;
    await store.put(key, Buffer.from('on disk'), { contentType: 'image/png' });
    const file = store.localPath(key);
    if (kind === 's3') return expect(file).toBeNull();
    expect(path.isAbsolute(file!)).toBe(true);
    expect(await fs.readFile(file!, 'utf8')).toBe('on disk');
  });

  it('never shows a half-written put, and a failed source leaves nothing', async () => {
    const key = `${unique()}/blob`;
    // More than one S3 part, so the multipart upload is under way while we look.
    const body = stalledBody(6 * MiB);
    const putting = store.put(key, body.stream, { contentType: 'image/png' });
    putting.catch(() => {});
    await body.stalled;
    await new Promise((resolve) => setTimeout(resolve, 300)); // let the first part reach the store
    expect(await store.stat(key)).toBeNull();
    await expect(store.open(key)).rejects.toBeInstanceOf(BlobNotFound);
    expect(await keys(store, { prefix: key.split('/')[0] })).toEqual([]);
    if (kind === 'disk') expect(await backend.tempFiles()).toHaveLength(1);
    body.fail();
    // The source's own error, not a store fault.
    await expect(putting).rejects.toThrow('client went away');
    expect(await store.stat(key)).toBeNull();
    expect(await backend.tempFiles()).toEqual([]);
  });

  it('a source that fails at once is reported as such, without an unhandled error', async () => {
    const key = `${unique()}/blob`;
    const source = new Readable({ read() {} });
    source.destroy(new Error('failed before the first byte'));
    await expect(store.put(key, source, { contentType: 'image/png' })).rejects.toThrow('failed before the first byte');
    expect(await store.stat(key)).toBeNull();
    expect(await backend.tempFiles()).toEqual([]);
  });

  it('a process killed mid-put leaves nothing visible; the disk temp file is swept after the grace period', async () => {
    const key = `${unique()}/blob`;
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(new URL('./helpers/storage-crash-child.ts', import.meta.url)), JSON.stringify(backend.childConfig), key, String(6 * MiB)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (data: Buffer) => (data.toString().includes('written') ? resolve() : reject(new Error(data.toString()))));
      child.once('exit', () => reject(new Error('the child exited before writing')));
    });
    await new Promise((resolve) => setTimeout(resolve, 500)); // bytes on their way into the store
    child.kill('SIGKILL');
    await exited;

    expect(await store.stat(key)).toBeNull();
    await expect(store.open(key)).rejects.toBeInstanceOf(BlobNotFound);
    expect(await keys(store, { prefix: key.split('/')[0] })).toEqual([]);
    if (kind === 'disk') {
      expect(await backend.tempFiles()).toHaveLength(1);
      expect(await store.sweepIncomplete(new Date(Date.now() - 3_600_000))).toBe(0); // still in its grace period
      expect(await backend.tempFiles()).toHaveLength(1);
      expect(await store.sweepIncomplete(new Date(Date.now() + 1000))).toBe(1);
    }
    expect(await backend.tempFiles()).toEqual([]);
  });

  it('check() passes when the store takes writes', async () => {
    await store.check();
    expect(await backend.tempFiles()).toEqual([]);
  });
});

/** A private S3 server and a store on it, for one describe block. */
function privateS3(bucket: string) {
  const env = {} as { s3: TestS3; store: BlobStore };
  beforeAll(async () => {
    env.s3 = await startS3({ bucket });
    env.store = createBlobStore(env.s3.storage, { credentials: env.s3.credentials, timeoutMs: TIMEOUT_MS });
  });
  afterAll(() => env.s3?.close());
  return env;
}

describe('s3 store: presigned requests', () => {
  const env = privateS3('tasklane-presign');

  it('GET works with plain fetch, with the type and disposition asked for, until it expires', async () => {
    const { store } = env;
    const { bytes } = payload(300_000);
    await store.put('images/one', bytes, { contentType: 'application/octet-stream' });
    const presigned = (await store.presignGet('images/one', {
      expiresIn: 60,
      contentType: 'image/webp',
      contentDisposition: 'inline; filename="one.webp"',
    }))!;
    expect(presigned).toMatchObject({ method: 'GET', headers: {} });
    const response = await fetch(presigned.url);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/webp');
    expect(response.headers.get('content-disposition')).toBe('inline; filename="one.webp"');
    expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);
    const ranged = await fetch(presigned.url, { headers: { range: 'bytes=5-9' } });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(bytes.subarray(5, 10))).toBe(true);
    // X-Amz-Date has whole seconds (a 1 s URL may live only a few ms): 2.1 s is past it in any case.
    const shortLived = (await store.presignGet('images/one', { expiresIn: 1 }))!;
    await new Promise((resolve) => setTimeout(resolve, 2100));
    expect(Date.now()).toBeGreaterThan(shortLived.expiresAt.getTime());
    expect((await fetch(shortLived.url)).status).toBe(403);
  });

  it('PUT works with plain fetch and the headers it names; its signature binds type and length', async () => {
    const { store } = env;
    const { bytes } = payload(123_456);
    const presigned = (await store.presignPut('uploads/abc', { contentType: 'image/jpeg', byteSize: bytes.length, expiresIn: 60 }))!;
    expect(presigned).toMatchObject({ method: 'PUT', headers: { 'content-type': 'image/jpeg' } });
    const url = new URL(presigned.url);
    expect(url.searchParams.get('X-Amz-SignedHeaders')?.split(';')).toEqual(['content-length', 'content-type', 'host']);
    expect(url.searchParams.get('X-Amz-Expires')).toBe('60');
    // No checksum the client could not know in advance.
    expect([...url.searchParams.keys()].filter((name) => /checksum/i.test(name))).toEqual([]);
    const response = await fetch(presigned.url, { method: 'PUT', headers: presigned.headers, body: bytes });
    expect(response.status).toBe(200);
    expect(await store.stat('uploads/abc')).toMatchObject({ byteSize: bytes.length, contentType: 'image/jpeg' });
    expect((await read(store, 'uploads/abc')).equals(bytes)).toBe(true);
  });

  it("the helper's environment configures this same store (for Tasklane processes under test)", () => {
    const { s3 } = env;
    expect(loadConfig(s3.env).storage).toEqual(s3.storage);
  });

  it('the disk store presigns nothing (the API takes uploads and serves downloads itself)', async () => {
    const disk = createBlobStore({ kind: 'disk', root: path.join(os.tmpdir(), 'tasklane-never-created') });
    expect(await disk.presignGet('a', { expiresIn: 60 })).toBeNull();
    expect(await disk.presignPut('a', { contentType: 'image/png', byteSize: 1, expiresIn: 60 })).toBeNull();
  });
});

describe('s3 store: unreachable', () => {
  const env = privateS3('tasklane-outage');

  it('every call fails with StorageUnavailable while the server is down, and works again after', async () => {
    const { s3, store } = env;
    await store.put('kept', Buffer.from('kept'), { contentType: 'image/png' });
    await s3.stop();
    const started = Date.now();
    const calls: [string, () => Promise<unknown>][] = [
      ['put', () => store.put('new', payload(1000).stream(), { contentType: 'image/png' })],
      ['open', () => store.open('kept')],
      ['stat', () => store.stat('kept')],
      ['delete', () => store.delete('kept')],
      ['list', () => keys(store)],
      ['check', () => store.check()],
    ];
    for (const [name, call] of calls) await expect(call(), name).rejects.toBeInstanceOf(StorageUnavailable);
    expect(Date.now() - started).toBeLessThan(6 * TIMEOUT_MS);
    await s3.start();
    await store.check();
    expect((await read(store, 'kept')).toString()).toBe('kept');
    expect(await store.stat('new')).toBeNull();
  });

  it('a server that accepts connections and never answers: StorageUnavailable within the per-call limit', async () => {
    const { s3 } = env;
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    const hanging = createBlobStore({ ...s3.storage, endpoint: `http://127.0.0.1:${port}` }, { credentials: s3.credentials, timeoutMs: 300 });
    try {
      for (const [name, call] of [
        ['stat', () => hanging.stat('x')],
        ['put', () => hanging.put('x', Buffer.from('x'), { contentType: 'image/png' })],
        ['check', () => hanging.check()],
      ] as const) {
        const started = Date.now();
        await expect(call(), name).rejects.toBeInstanceOf(StorageUnavailable);
        // 3 tries of 300 ms and the SDK's backoff between them.
        expect(Date.now() - started, name).toBeLessThan(5000);
      }
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('a put cut off mid-stream (connections dropped) fails with StorageUnavailable and leaves nothing', async () => {
    const { s3, store } = env;
    const proxy = await tcpProxy(s3.port);
    const viaProxy = createBlobStore({ ...s3.storage, endpoint: `http://127.0.0.1:${proxy.port}` }, {
      credentials: s3.credentials,
      timeoutMs: TIMEOUT_MS,
    });
    try {
      const body = stalledBody(6 * MiB);
      const putting = viaProxy.put('cut', body.stream, { contentType: 'image/png' });
      putting.catch(() => {});
      await body.stalled;
      await new Promise((resolve) => setTimeout(resolve, 300));
      await proxy.down();
      body.stream.push(Buffer.alloc(MiB)); // the next part cannot go out
      body.stream.push(null);
      await expect(putting).rejects.toBeInstanceOf(StorageUnavailable);
      await expect(viaProxy.check()).rejects.toBeInstanceOf(StorageUnavailable);
      expect(await store.stat('cut')).toBeNull();
    } finally {
      await proxy.close();
    }
  });

  it('a read cut off mid-stream fails with StorageUnavailable, not as a short blob', async () => {
    const { s3, store } = env;
    // Larger than every socket buffer on the way (loopback buffers grow to several MiB each).
    const { bytes } = payload(48 * MiB);
    await store.put('long', bytes, { contentType: 'image/png' });
    const proxy = await tcpProxy(s3.port);
    const viaProxy = createBlobStore({ ...s3.storage, endpoint: `http://127.0.0.1:${proxy.port}` }, {
      credentials: s3.credentials,
      timeoutMs: TIMEOUT_MS,
    });
    try {
      const { stream, byteSize } = await viaProxy.open('long');
      expect(byteSize).toBe(bytes.length);
      let received = 0;
      const error = await new Promise<unknown>((resolve) => {
        stream.on('data', (chunk: Buffer) => {
          received += chunk.length;
          // Paused, so the rest cannot arrive before the cut.
          if (received >= MiB && !stream.isPaused()) {
            stream.pause();
            void proxy.down().then(() => stream.resume());
          }
        });
        stream.once('end', () => resolve(null));
        stream.once('error', resolve);
      });
      expect(error).toBeInstanceOf(StorageUnavailable);
      expect(received).toBeLessThan(bytes.length);
      // Stopping a read early is no error, and the blob is whole.
      await proxy.up();
      const early = await viaProxy.open('long');
      await new Promise<void>((resolve) => early.stream.once('data', () => resolve()));
      early.stream.destroy();
      expect((await read(store, 'long')).equals(bytes)).toBe(true);
    } finally {
      await proxy.close();
    }
  });
});

describe('disk store: not writable', () => {
  let dir: string;
  let mounted = false;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklane-disk-faults-'));
  });
  afterAll(async () => {
    if (mounted) execFileSync('umount', ['-l', path.join(dir, 'mnt')]);
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('a store directory that cannot exist (its parent is a file): StorageUnavailable', async () => {
    await fs.writeFile(path.join(dir, 'file'), 'not a directory');
    const store = createBlobStore({ kind: 'disk', root: path.join(dir, 'file', 'blobs') });
    await expect(store.check()).rejects.toBeInstanceOf(StorageUnavailable);
    await expect(store.put('a', Buffer.from('x'), { contentType: 'image/png' })).rejects.toBeInstanceOf(StorageUnavailable);
    await expect(store.open('a')).rejects.toBeInstanceOf(StorageUnavailable);
    await expect(store.stat('a')).rejects.toBeInstanceOf(StorageUnavailable);
  });

  it.skipIf(!canMount)('a full disk (a 1 MiB tmpfs): the put is refused, its partial file removed, the space given back', async () => {
    const mnt = path.join(dir, 'mnt');
    await fs.mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
    mounted = true;
    const store = createBlobStore({ kind: 'disk', root: path.join(mnt, 'blobs') });
    await store.put('small', Buffer.from('small'), { contentType: 'image/png' });
    const error = await store.put('big', payload(2 * MiB).stream(), { contentType: 'image/png' }).catch((e) => e);
    expect(error).toBeInstanceOf(StorageUnavailable);
    expect(error.cause.code).toBe('ENOSPC');
    expect(await store.stat('big')).toBeNull();
    expect(await fs.readdir(path.join(mnt, 'blobs', '.tmp'))).toEqual([]);
    await store.check();
    await store.put('after', payload(512 * 1024).stream(), { contentType: 'image/png' });
    expect((await read(store, 'small')).toString()).toBe('small');

    // Read-only (remounted): writes refused, blobs still readable.
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    const readOnly = await store.put('ro', Buffer.from('x'), { contentType: 'image/png' }).catch((e) => e);
    expect(readOnly).toBeInstanceOf(StorageUnavailable);
    expect(readOnly.cause.code).toBe('EROFS');
    await expect(store.check()).rejects.toBeInstanceOf(StorageUnavailable);
    await expect(store.delete('small')).rejects.toBeInstanceOf(StorageUnavailable);
    expect((await read(store, 'small')).toString()).toBe('small');
    expect(await keys(store)).toEqual(['after', 'small']);

    execFileSync('mount', ['-o', 'remount,rw', mnt]);
    await store.check();
    execFileSync('umount', [mnt]);
    mounted = false;
  });
});

describe('disk store: its directories', () => {
  it('a put still lands after its directories were removed by hand (the store remembers which it made)', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklane-disk-dirs-'));
    try {
      const store = createBlobStore({ kind: 'disk', root });
      const { bytes, stream } = payload(1.5 * MiB); // several batched writes
      await store.put('images/a', stream(), { contentType: 'image/png' });
      await fs.rm(path.join(root, 'images'), { recursive: true });
      await store.put('images/b', Buffer.from('b'), { contentType: 'image/png' });
      expect((await read(store, 'images/b')).toString()).toBe('b');
      await fs.rm(root, { recursive: true });
      await store.put('images/c', stream(), { contentType: 'image/png' });
      expect((await read(store, 'images/c')).equals(bytes)).toBe(true);
      await store.check();
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});
