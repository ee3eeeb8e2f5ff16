// The blob store's typed errors. Callers map them at the edge: StorageUnavailable is
// transient (503 / STORAGE_UNAVAILABLE, a job retried), the others are about one blob.

/** The store cannot be used right now: unreachable, timing out, read-only, full, no permission. */
export class StorageUnavailable extends Error {
  override name = 'StorageUnavailable';
  readonly code = 'STORAGE_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export class BlobNotFound extends Error {
  override name = 'BlobNotFound';
  constructor(readonly key: string) {
    super(`blob "${key}" does not exist`);
  }
}

/** A put was refused because the body grew past maxBytes; nothing of it is visible. */
export class BlobTooLarge extends Error {
  override name = 'BlobTooLarge';
  constructor(readonly maxBytes: number) {
    super(`blob is larger than ${maxBytes} bytes`);
  }
}

/** A range starting at or past the end of the blob (HTTP 416). */
export class RangeNotSatisfiable extends Error {
  override name = 'RangeNotSatisfiable';
  constructor(readonly byteSize: number) {
    super(`range not satisfiable for a blob of ${byteSize} bytes`);
  }
}

/** A key outside the allowed alphabet or shape: a bug or an attack, never retried. */
export class InvalidBlobKey extends Error {
  override name = 'InvalidBlobKey';
  constructor(readonly key: string, reason: string) {
    super(`invalid blob key ${JSON.stringify(key)}: ${reason}`);
  }
}
