// An S3-protocol server (s3rver) in a child process, for `npm run chaos`: unlike the
// in-process one of s3rver.ts it can be SIGKILLed — connections reset mid-request, whatever
// it had not written lost — and started again on the same port with the same directory,
// as a store host that crashed and came back.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StorageConfig } from '../../src/storage/index.ts';
import { freePort } from './outage.ts';
import { ROOT } from './service.ts';
import { S3_CREDENTIALS } from './s3rver.ts';

const CHILD = fileURLToPath(new URL('./s3rver-child.ts', import.meta.url));

export interface S3Process {
  endpoint: string;
  /** STORAGE_URL, S3_ENDPOINT, AWS_REGION, S3_FORCE_PATH_STYLE and credentials for a Tasklane process. */
  env: Record<string, string>;
  /** For createBlobStore(storage, { credentials }) in the caller's own process. */
  storage: StorageConfig;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** The server's pid while it runs. */
  pid(): number | undefined;
  /** SIGKILL, and waits for the exit. */
  kill(): Promise<void>;
  /** Starts it again (same port, same objects); resolves once it listens. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

export async function startS3Process({ bucket = 'tasklane-chaos' } = {}): Promise<S3Process> {
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklane-s3rver-'));
  const port = await freePort();
  let child: ChildProcess | null = null;
  const start = async () => {
    if (child) return;
    const started = spawn(process.execPath, ['--import', 'tsx', CHILD, String(port), directory, bucket], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    child = started;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`s3rver did not start in 60 s: ${output}`)), 60_000);
      started.stdout!.on('data', (data: Buffer) => {
        output += data.toString();
        if (output.includes('listening')) {
          clearTimeout(timer);
          resolve();
        }
      });
      started.stderr!.on('data', (data: Buffer) => void (output += data.toString()));
      started.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited (${signal ?? code}) before listening: ${output}`));
      });
    }).catch((error) => {
      child = null;
      started.kill('SIGKILL');
      throw error;
    });
    started.once('exit', () => {
      if (child === started) child = null;
    });
  };
  const stop = async (signal: NodeJS.Signals) => {
    const current = child;
    if (!current || current.exitCode !== null || current.signalCode !== null) return;
    const exited = new Promise((resolve) => current.once('exit', resolve));
    current.kill(signal);
    await exited;
    child = null;
  };
  await start();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    env: {
      STORAGE_URL: `s3://${bucket}`,
      S3_ENDPOINT: endpoint,
      AWS_REGION: 'us-east-1',
      S3_FORCE_PATH_STYLE: 'true',
      ...S3_CREDENTIALS,
    },
    storage: { kind: 's3', bucket, prefix: '', endpoint, region: 'us-east-1', forcePathStyle: true },
    credentials: { accessKeyId: S3_CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: S3_CREDENTIALS.AWS_SECRET_ACCESS_KEY },
    pid: () => child?.pid,
    kill: () => stop('SIGKILL'),
    start,
    async close() {
      await stop('SIGTERM');
      await fs.rm(directory, { recursive: true, force: true });
    },
  };
}
