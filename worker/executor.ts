// A child process of a worker that runs one job at a time, so the worker can stop work
// for real (SIGKILL) on a timeout: libvips' own timeout does not stop every encoder.
// It reads the source from the blob store itself and writes the result there itself: the
// worker sends keys and parameters and gets back metadata, never bytes.
//
// Memory does not grow with the image: libvips reads the source from a file (disk: the
// blob's own file; s3: the object streamed to a scratch file first, as sharp would
// otherwise collect a piped stream whole) and encodes the result into a scratch file,
// which is then streamed into the store (hashed on the way). The scratch directory is the
// worker's to give (argv) and to remove when it replaces or stops this process.
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { blobStore, imageContentType } from '../src/blobs.ts';
import { InvalidResizeParams, resizeImageToFile, UnsupportedImage, type ResizeParams } from '../src/jobs/image-resize.ts';
import { BlobNotFound, StorageUnavailable } from '../src/storage/index.ts';

process.title = 'tasklane-executor';

export interface ExecutorRequest {
  sourceKey: string;
  /** Where the result goes; the worker records it (or deletes it if the task was lost). */
  resultKey: string;
  params: ResizeParams;
  maxInputPixels: number;
  maxOutputPixels: number;
}

/**
 * permanent: the image or parameters are bad, a retry cannot help; gone: the source blob
 * is not there (its task was deleted); unavailable: the blob store could not be used
 * (unreachable, read-only, full); transient: anything else.
 */
export type ExecutorErrorKind = 'permanent' | 'gone' | 'unavailable' | 'transient';

export type ExecutorMessage =
  | { type: 'ready'; pid: number }
  | { type: 'progress'; stage: string; progress: number }
  | { type: 'done'; format: ResizeParams['format']; width: number; height: number; byteSize: number; sha256: string }
  | { type: 'error'; kind: ExecutorErrorKind; message: string };

const send = (message: ExecutorMessage) => process.send?.(message);

/**
 * Progress points earlier than this after the job's start are not sent: the worker writes
 * progress at most every 100 ms after its claim and would drop them, and for a small image
 * (done in a few ms) they were most of the IPC traffic.
 */
const QUIET_START_MS = 50;

const scratchDir = process.argv[2] ?? mkdtempSync(path.join(os.tmpdir(), 'tasklane-executor-'));
mkdirSync(scratchDir, { recursive: true });

/** A file path of the source for libvips: the blob's own file (disk), or a scratch copy (s3). */
async function sourceFile(key: string, scratch: (name: string) => string): Promise<string> {
  const store = blobStore();
  const file = store.localPath(key);
  if (file !== null) {
    if (!(await store.stat(key))) throw new BlobNotFound(key);
    return file;
  }
  const copy = scratch('source');
  await pipeline((await store.open(key)).stream, createWriteStream(copy));
  return copy;
}

process.on('message', async (request: ExecutorRequest) => {
  const started = performance.now();
  const job = randomUUID();
  const scratch = (name: string) => path.join(scratchDir, `${job}-${name}`);
  try {
    const source = await sourceFile(request.sourceKey, scratch);
    const resultFile = scratch('result');
    const result = await resizeImageToFile(source, request.params, resultFile, {
      maxInputPixels: request.maxInputPixels,
      maxOutputPixels: request.maxOutputPixels,
      onStage: (stage, progress) => {
        if (performance.now() - started >= QUIET_START_MS) send({ type: 'progress', stage, progress });
      },
    });
    const stored = await blobStore().put(request.resultKey, createReadStream(resultFile), { contentType: imageContentType(result.format) });
    send({ type: 'done', format: result.format, width: result.width, height: result.height, byteSize: stored.byteSize, sha256: stored.sha256 });
  } catch (error) {
    // Bad bytes or bad parameters fail the same way every time: never worth a retry.
    const kind: ExecutorErrorKind =
      error instanceof UnsupportedImage || error instanceof InvalidResizeParams
        ? 'permanent'
        : error instanceof BlobNotFound
          ? 'gone'
          : error instanceof StorageUnavailable
            ? 'unavailable'
            : 'transient';
    const message = error instanceof StorageUnavailable ? `blob store unavailable: ${error.message}` : (error as Error).message;
    send({ type: 'error', kind, message });
  } finally {
    await Promise.all(['source', 'result'].map((name) => rm(scratch(name), { force: true }).catch(() => {})));
  }
});

// The worker owns us: when it goes, we go. Signals meant for the whole process group
// (Ctrl-C in a terminal, the terminal closing, a SIGTERM fan-out) are the worker's to handle: it decides
// whether the job finishes or is handed back, and kills us if need be.
process.on('disconnect', () => process.exit(0));
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('SIGHUP', () => {});

// Only now can a job be received: the pool sends nothing before this, so JOB_TIMEOUT_MS
// never counts our start-up (loading sharp takes a while on a busy machine).
send({ type: 'ready', pid: process.pid });
