// The blob store of this process (STORAGE_URL), created on first use: image bytes live
// there, PostgreSQL holds their metadata and key (DESIGN.md §2).
import { config } from './config.ts';
import { createBlobStore, type BlobStore } from './storage/index.ts';

export { imageContentType, imageKey } from './storage/images.ts';

let store: BlobStore | undefined;

export function blobStore(): BlobStore {
  return (store ??= createBlobStore(config.storage, { timeoutMs: config.storageTimeoutMs }));
}
