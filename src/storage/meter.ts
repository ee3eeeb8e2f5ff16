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
  /** The body's own error (a client gone away): reported as it is, not as a store fault. */
  sourceError: unknown;
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

/**
 * A put's body piped through a Meter; read the meter. Errors (the source's, BlobTooLarge)
 * reach the meter's reader, whose iterator rethrows them; the listeners here only keep an
 * error raised before reading starts from going unhandled. A Buffer over the cap is refused
 * at once.
 */
export function metered(body: PutBody, maxBytes?: number): { source: Readable; meter: Meter } {
  if (maxBytes !== undefined && !(body instanceof Readable) && body.byteLength > maxBytes) throw new BlobTooLarge(maxBytes);
  // (Readable.from alone would iterate a Buffer byte by byte.)
  const source =
    body instanceof Readable
      ? body
      : Readable.from([Buffer.from(body.buffer, body.byteOffset, body.byteLength)], { objectMode: false });
  const meter = new Meter(maxBytes);
  source.on('error', (error) => {
    meter.sourceError = error;
    meter.destroy(error);
  });
  meter.on('error', () => {});
  source.pipe(meter);
  return { source, meter };
}
