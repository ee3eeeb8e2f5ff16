// A pass-through stream that counts and hashes what a put writes, and stops the write
// with BlobTooLarge as soon as it grows past maxBytes: the cap holds while streaming,
// before the excess reaches the store.
import { createHash, type Hash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { BlobTooLarge } from './errors.ts';

export class Meter extends Transform {
  bytes = 0;
  /** True once the cap was passed: the put fails with BlobTooLarge whatever else broke after. */
  tooLarge = false;
  private readonly hash: Hash = createHash('sha256');

  constructor(private readonly maxBytes = Number.POSITIVE_INFINITY) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      this.tooLarge = true;
      callback(new BlobTooLarge(this.maxBytes));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  /** Hex sha-256 of everything that passed; call once, after the stream ended. */
  sha256(): string {
    return this.hash.digest('hex');
  }
}

export type PutBody = Readable | Buffer | Uint8Array;

/** A Buffer body as a byte stream (Readable.from alone would iterate it byte by byte). */
export function toStream(body: PutBody): Readable {
  if (body instanceof Readable) return body;
  return Readable.from([Buffer.from(body.buffer, body.byteOffset, body.byteLength)], { objectMode: false });
}
