// A real S3-protocol server on loopback for tests (s3rver, files in a temp directory),
// with the environment that points Tasklane at it. s3rver accepts any credentials; it
// does not verify SigV4 signatures (so it cannot refuse a tampered presigned request).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';

export interface TestS3 {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  port: number;
  bucket: string;
  /** STORAGE_URL, S3_ENDPOINT, AWS_REGION, S3_FORCE_PATH_STYLE and credentials for a Tasklane process. */
  env: Record<string, string>;
  /** For createBlobStore(storage, { credentials }) in the test's own process. */
  storage: { kind: 's3'; bucket: string; prefix: string; endpoint: string; region: string; forcePathStyle: true };
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Stops the server (connections refused); its objects stay. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same objects. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

export const S3_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };

/** `prefix` ("" or ending with "/") goes into STORAGE_URL, so one server can hold several stores. */
export async function startS3({ bucket = 'tasklane-test', prefix = '' } = {}): Promise<TestS3> {
  if (bucket.length < 3) throw new Error('S3 bucket names have at least 3 characters');
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklane-s3rver-'));
  let server: S3rver | null = null;
  let port = 0;
  const start = async () => {
    if (server) return;
    const instance = new S3rver({ address: '127.0.0.1', port, directory, silent: true, configureBuckets: [{ name: bucket }] });
    port = (await instance.run()).port;
    server = instance;
  };
  const stop = async () => {
    const current = server;
    server = null;
    if (!current) return;
    // close() waits for open keep-alive connections: cut them so "down" means down now.
    current.httpServer?.closeAllConnections();
    await current.close();
  };
  await start();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    port,
    bucket,
    env: {
      STORAGE_URL: `s3://${bucket}${prefix ? `/${prefix}` : ''}`,
      S3_ENDPOINT: endpoint,
      AWS_REGION: 'us-east-1',
      S3_FORCE_PATH_STYLE: 'true',
      ...S3_CREDENTIALS,
    },
    storage: { kind: 's3', bucket, prefix, endpoint, region: 'us-east-1', forcePathStyle: true },
    credentials: { accessKeyId: S3_CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: S3_CREDENTIALS.AWS_SECRET_ACCESS_KEY },
    stop,
    start,
    async close() {
      await stop();
      await fs.rm(directory, { recursive: true, force: true });
    },
  };
}
