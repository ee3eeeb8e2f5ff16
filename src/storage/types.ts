// The blob store: image bytes live here, never in PostgreSQL, Redis or a queue message
// (DESIGN.md §2). Two backends implement it: disk (default) and S3-compatible.
//
// Invariants every backend keeps:
// - A put is all or nothing: until it resolves, no reader, stat or list sees the key, and
//   a failed put (too large, source error, store error, crash) leaves nothing visible.
//   A put to an existing key replaces it as a whole.
// - Bodies are streamed: memory per put is bounded, whatever the blob's size.
// - Store faults surface as StorageUnavailable; a missing blob as BlobNotFound (open) or
//   null (stat); delete is idempotent.
import type { Readable } from 'node:stream';
import type { PutBody } from './meter.ts';

export type { PutBody };

export interface PutOptions {
  contentType: string;
  /** The put fails with BlobTooLarge, leaving nothing, as soon as the body passes this. */
  maxBytes?: number;
}

export interface PutResult {
  byteSize: number;
  /** Hex sha-256 of the bytes, computed while streaming: a strong ETag for downloads. */
  sha256: string;
}

/** An HTTP byte range, both ends inclusive; `end` past the blob is clamped (as HTTP does). */
export interface ByteRange {
  start: number;
  end?: number;
}

export interface OpenedBlob {
  /** The bytes (of the range, if one was asked); the caller must consume or destroy it. */
  stream: Readable;
  /** Size of the whole blob. */
  byteSize: number;
  /** The range actually served, ends inclusive; absent when the whole blob is served. */
  range?: { start: number; end: number };
}

export interface BlobStat {
  byteSize: number;
  lastModified: Date;
  /** As stored with the blob; the disk store keeps none (the database has the format). */
  contentType: string | null;
}

export interface ListedBlob {
  key: string;
  byteSize: number;
  lastModified: Date;
}

export interface ListOptions {
  /** Only keys starting with this string ("" = all). */
  prefix?: string;
  /** Only blobs last modified before this instant (sweeping with a grace period). */
  olderThan?: Date;
}

/** A request a client makes directly against the store. */
export interface PresignedRequest {
  method: 'GET' | 'PUT';
  url: string;
  /** Headers the client must send as they are (they are part of the signature). */
  headers: Record<string, string>;
  expiresAt: Date;
}

export interface BlobStore {
  readonly kind: 'disk' | 's3';
  /** Streams `body` into `key`; see the invariants above. */
  put(key: string, body: PutBody, options: PutOptions): Promise<PutResult>;
  /** Opens a blob for reading; BlobNotFound, RangeNotSatisfiable. */
  open(key: string, options?: { range?: ByteRange }): Promise<OpenedBlob>;
  /** Metadata, or null when there is no such blob. */
  stat(key: string): Promise<BlobStat | null>;
  /** Removes a blob; removing a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** Every blob (in no promised order), for sweeping; pages through the store lazily. */
  list(options?: ListOptions): AsyncIterable<ListedBlob>;
  /** A file path sharp can read directly (disk), or null (s3). Does not check existence. */
  localPath(key: string): string | null;
  /** A presigned GET the client can follow without our API (s3), or null (disk). */
  presignGet(
    key: string,
    options: { expiresIn: number; contentType?: string; contentDisposition?: string },
  ): Promise<PresignedRequest | null>;
  /**
   * A presigned PUT bound to this content type and exact length (s3), or null (disk: the
   * API takes the upload itself).
   */
  presignPut(key: string, options: { contentType: string; byteSize: number; expiresIn: number }): Promise<PresignedRequest | null>;
  /**
   * Removes what interrupted puts left behind (disk: temp files of a crashed process) that
   * is older than `olderThan`; returns how many. The grace period must exceed the longest
   * upload. s3: 0, see s3.ts.
   */
  sweepIncomplete(olderThan: Date): Promise<number>;
  /** Resolves when the store accepts a write now; else StorageUnavailable (for /ready). */
  check(): Promise<void>;
}
