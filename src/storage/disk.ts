// The disk store: one directory, a key is a relative path under it.
//
// Writes are atomic and durable: the bytes go to a temp file in `<root>/.tmp/` (same file
// system, so rename is atomic), the file is fsync'd, renamed onto the key, and the target
// directory is fsync'd. A reader therefore sees the old blob, the whole new one or none;
// a crash leaves at most a temp file, which sweepIncomplete removes after a grace period.
// Dot-names are never keys (keys.ts), so nothing in `.tmp` is ever listed or opened.
import { randomBytes } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { BlobNotFound, RangeNotSatisfiable, StorageUnavailable } from './errors.ts';
import { assertValidKey, assertValidPrefix, isValidKey } from './keys.ts';
import { metered, type PutBody } from './meter.ts';
import type { BlobStat, BlobStore, ByteRange, ListedBlob, ListOptions, OpenedBlob, PutOptions, PutResult } from './types.ts';

const TMP_DIR = '.tmp';
/**
 * A put gathers the body's chunks (an upload arrives in pieces of 16–64 KiB) and writes them
 * with one writev per this many bytes: a write per chunk costs a thread-pool round trip and
 * a system call each, several times the CPU of the copy itself. Bounds a put's memory too.
 */
const WRITE_BATCH_BYTES = 512 * 1024;

/** File-system errors that mean "the store cannot be written or read now", not "no such blob". */
const UNAVAILABLE_CODES = new Set(['EROFS', 'ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EIO', 'ENOTDIR', 'EMFILE', 'ENFILE']);

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

function unavailable(error: unknown, what: string): never {
  const code = errorCode(error);
  if (code && UNAVAILABLE_CODES.has(code)) {
    throw new StorageUnavailable(`disk store: ${what} failed (${code})`, { cause: error });
  }
  throw error;
}

/** Writes the body's chunks, one writev per WRITE_BATCH_BYTES. */
async function writeBatched(handle: fs.FileHandle, chunks: AsyncIterable<unknown>): Promise<void> {
  let batch: Buffer[] = [];
  let batchBytes = 0;
  for await (const chunk of chunks) {
    batch.push(chunk as Buffer);
    batchBytes += (chunk as Buffer).length;
    if (batchBytes >= WRITE_BATCH_BYTES) {
      await writeAll(handle, batch);
      batch = [];
      batchBytes = 0;
    }
  }
  if (batchBytes) await writeAll(handle, batch);
}

/** Writes every buffer, however many calls writev takes (it may write less than asked). */
async function writeAll(handle: fs.FileHandle, buffers: Buffer[]): Promise<void> {
  let pending = buffers;
  while (pending.length) {
    let { bytesWritten } = await handle.writev(pending);
    while (pending.length && bytesWritten >= pending[0].length) {
      bytesWritten -= pending[0].length;
      pending = pending.slice(1);
    }
    if (bytesWritten > 0) pending = [pending[0].subarray(bytesWritten), ...pending.slice(1)];
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class DiskStore implements BlobStore {
  readonly kind = 'disk' as const;
  readonly root: string;
  private readonly tmpDir: string;
  /** Directories this process made sure of: no mkdir per put (rename recreates a removed one). */
  private readonly knownDirs = new Set<string>();

  constructor(root: string) {
    this.root = path.resolve(root);
    this.tmpDir = path.join(this.root, TMP_DIR);
  }

  localPath(key: string): string {
    assertValidKey(key);
    // Valid keys cannot climb out of root; this is the belt to those braces.
    const file = path.join(this.root, ...key.split('/'));
    if (!file.startsWith(this.root + path.sep)) throw new Error(`key escapes the store: ${key}`);
    return file;
  }

  async put(key: string, body: PutBody, { maxBytes }: PutOptions): Promise<PutResult> {
    const target = this.localPath(key);
    // A source error or BlobTooLarge comes out of the meter, a disk error out of write.
    const { source, meter } = metered(body, maxBytes);
    let temp: string | undefined;
    try {
      temp = path.join(this.tmpDir, `${Date.now()}-${randomBytes(8).toString('hex')}`);
      const file = temp;
      const handle = await this.inDir(this.tmpDir, () => fs.open(file, 'wx', 0o644));
      try {
        // Through our own handle (not a WriteStream that closes it), so it can be fsync'd.
        await writeBatched(handle, meter);
        await handle.sync();
      } finally {
        await handle.close();
      }
      const dir = path.dirname(target);
      await this.inDir(dir, () => fs.rename(file, target));
      temp = undefined;
      await fsyncDir(dir);
      return { byteSize: meter.bytes, sha256: meter.sha256() };
    } catch (error) {
      source.destroy();
      if (temp) await fs.rm(temp, { force: true }).catch(() => {});
      unavailable(error, `writing "${key}"`);
    }
  }

  async open(key: string, { range }: { range?: ByteRange } = {}): Promise<OpenedBlob> {
    const file = this.localPath(key);
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, 'r');
    } catch (error) {
      if (await this.isMissing(error)) throw new BlobNotFound(key);
      unavailable(error, `opening "${key}"`);
    }
    try {
      // Size from the opened file: a concurrent replace (rename) cannot mix two versions.
      const stats = await handle.stat();
      if (!stats.isFile()) throw new BlobNotFound(key);
      const byteSize = stats.size;
      if (!range) return { stream: handle.createReadStream(), byteSize };
      const start = range.start;
      const end = Math.min(range.end ?? byteSize - 1, byteSize - 1);
      if (!(start >= 0) || start >= byteSize || end < start) throw new RangeNotSatisfiable(byteSize);
      return { stream: handle.createReadStream({ start, end }), byteSize, range: { start, end } };
    } catch (error) {
      await handle.close();
      if (error instanceof BlobNotFound || error instanceof RangeNotSatisfiable) throw error;
      unavailable(error, `opening "${key}"`);
    }
  }

  async stat(key: string): Promise<BlobStat | null> {
    const file = this.localPath(key);
    let stats: Stats;
    try {
      stats = await fs.stat(file);
    } catch (error) {
      if (await this.isMissing(error)) return null;
      unavailable(error, `stat of "${key}"`);
    }
    if (!stats.isFile()) return null;
    return { byteSize: stats.size, lastModified: stats.mtime, contentType: null };
  }

  async delete(key: string): Promise<void> {
    const file = this.localPath(key);
    try {
      await fs.unlink(file);
    } catch (error) {
      if (await this.isMissing(error)) return;
      unavailable(error, `deleting "${key}"`);
    }
    // Empty directories stay: removing one could race a put that just created it.
  }

  async *list({ prefix = '', olderThan }: ListOptions = {}): AsyncIterable<ListedBlob> {
    assertValidPrefix(prefix);
    // Walk only the directory the prefix pins down, then filter by the full prefix.
    const base = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    yield* this.walk(base, prefix, olderThan);
  }

  private async *walk(dirKey: string, prefix: string, olderThan: Date | undefined): AsyncIterable<ListedBlob> {
    const dir = dirKey === '' ? this.root : path.join(this.root, ...dirKey.split('/'));
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (error) {
      if (await this.isMissing(error)) return;
      unavailable(error, `listing "${dirKey}"`);
    }
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      if (!isValidKey(key)) continue; // .tmp, and anything that is not ours
      if (entry.isDirectory()) {
        if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* this.walk(key, prefix, olderThan);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        const stats = await fs.stat(path.join(dir, entry.name)).catch(() => null);
        if (!stats) continue; // deleted meanwhile
        if (olderThan && stats.mtime >= olderThan) continue;
        yield { key, byteSize: stats.size, lastModified: stats.mtime };
      }
    }
  }

  async sweepIncomplete(olderThan: Date): Promise<number> {
    let names: string[];
    try {
      names = await fs.readdir(this.tmpDir);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return 0;
      unavailable(error, 'listing temp files');
    }
    let removed = 0;
    for (const name of names) {
      const file = path.join(this.tmpDir, name);
      const stats = await fs.stat(file).catch(() => null);
      if (!stats || stats.mtime >= olderThan) continue;
      await fs.rm(file, { force: true }).catch((error) => unavailable(error, 'removing a temp file'));
      removed++;
    }
    return removed;
  }

  async presignGet(): Promise<null> {
    return null;
  }

  async presignPut(): Promise<null> {
    return null;
  }

  /** Writes, fsyncs and removes a probe file: fails on a read-only, full or inaccessible store. */
  async check(): Promise<void> {
    try {
      const probe = path.join(this.tmpDir, `check-${randomBytes(8).toString('hex')}`);
      const handle = await this.inDir(this.tmpDir, () => fs.open(probe, 'wx', 0o644));
      try {
        await handle.writeFile('ok');
        await handle.sync();
      } finally {
        await handle.close();
        await fs.rm(probe, { force: true });
      }
    } catch (error) {
      unavailable(error, 'the write check');
    }
  }

  /**
   * Whether a failed lookup means "no such blob": ENOENT, or ENOTDIR from a key below
   * another blob ("a/b" when "a" is a file) while the root itself is a healthy directory.
   */
  private async isMissing(error: unknown): Promise<boolean> {
    const code = errorCode(error);
    if (code === 'ENOENT') return true;
    if (code !== 'ENOTDIR') return false;
    const root = await fs.stat(this.root).catch(() => null);
    return root?.isDirectory() ?? false;
  }

  /**
   * Runs `operation` on a path in `dir`, making `dir` first if this process has not yet;
   * if the directory was removed behind our back (ENOENT), makes it again and retries once.
   */
  private async inDir<T>(dir: string, operation: () => Promise<T>): Promise<T> {
    await this.ensureDir(dir);
    try {
      return await operation();
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
      this.knownDirs.clear();
      await this.ensureDir(dir);
      return operation();
    }
  }

  /** mkdir -p that also fsyncs the parents of the directories it created (durable names). */
  private async ensureDir(dir: string): Promise<void> {
    if (this.knownDirs.has(dir)) return;
    const first = await fs.mkdir(dir, { recursive: true });
    if (first !== undefined) {
      for (let current = dir; ; current = path.dirname(current)) {
        await fsyncDir(path.dirname(current));
        if (current === first) break;
      }
    }
    this.knownDirs.add(dir);
  }
}
