// Once per test run: with TEST_STORAGE=s3, one S3-protocol server (s3rver) for every test
// file, each of which keeps its blobs under its own prefix (see storageEnv in infra.ts).
import type { TestProject } from 'vitest/node';
import { startS3, type TestS3 } from './s3rver.ts';

let s3: TestS3 | undefined;

export async function setup(project: TestProject) {
  const kind = process.env.TEST_STORAGE ?? 'disk';
  if (kind !== 'disk' && kind !== 's3') throw new Error(`TEST_STORAGE must be disk or s3, got "${kind}"`);
  if (kind === 's3') {
    s3 = await startS3({ bucket: 'tasklane-suite' });
    project.provide('testS3', { endpoint: s3.endpoint, bucket: s3.bucket });
  } else {
    project.provide('testS3', null);
  }
}

export async function teardown() {
  await s3?.close();
}

declare module 'vitest' {
  export interface ProvidedContext {
    testS3: { endpoint: string; bucket: string } | null;
  }
}
