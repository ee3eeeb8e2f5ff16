// The blob store of this process, chosen by STORAGE_URL (see config.ts).
import { DiskStore } from './disk.ts';
import { S3Store } from './s3.ts';
import type { BlobStore } from './types.ts';

export * from './errors.ts';
export type * from './types.ts';
export { assertValidKey } from './keys.ts';
export { DiskStore } from './disk.ts';
export { S3Store } from './s3.ts';

export type StorageConfig =
  | { kind: 'disk'; root: string }
  | { kind: 's3'; bucket: string; prefix: string; endpoint?: string; region: string; forcePathStyle: boolean };

export interface StoreOptions {
  /** STORAGE_TIMEOUT_MS. */
  timeoutMs?: number;
  /** s3 only; unset = the AWS SDK's default credential chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

export function createBlobStore(storage: StorageConfig, { timeoutMs = 10_000, credentials }: StoreOptions = {}): BlobStore {
  return storage.kind === 'disk' ? new DiskStore(storage.root) : new S3Store({ ...storage, timeoutMs, credentials });
}
