// Test images made on the fly with sharp (no binary fixtures in the repository).
import zlib from 'node:zlib';
import sharp from 'sharp';

/** A photo-like image: a gradient with noise, so encoders have real work to do. */
export async function photo(width: number, height: number, format: 'jpeg' | 'png' | 'webp' | 'gif' | 'tiff' | 'avif' = 'jpeg') {
  const noise = await sharp({ create: { width, height, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
    .png()
    .toBuffer();
  return sharp({
    create: { width, height, channels: 3, background: { r: 40, g: 120, b: 200 } },
  })
    .composite([{ input: noise, blend: 'overlay' }])
    .toFormat(format)
    .toBuffer();
}

/** A JPEG whose EXIF orientation says "rotate 90° clockwise to display" (6). */
export async function rotatedJpeg(storedWidth: number, storedHeight: number) {
  return sharp({ create: { width: storedWidth, height: storedHeight, channels: 3, background: '#c04040' } })
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toBuffer();
}

/** A small PNG whose header claims width x height (a "pixel bomb"): only the IHDR lies. */
export async function pngClaiming(width: number, height: number) {
  const real = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } }).png().toBuffer();
  const forged = Buffer.from(real);
  forged.writeUInt32BE(width, 16);
  forged.writeUInt32BE(height, 20);
  // The IHDR CRC is now wrong; decoders that check it fail later, the header read does not.
  return forged;
}

/**
 * A real decompression bomb: a valid 1-bit grayscale PNG of width x height, all black, whose
 * zlib stream inflates ~1000:1 (12000x12000 is ~18 KB on disk, 144 MP once decoded).
 * Every CRC is right, so only a pixel limit stops a decoder. Interlaced (Adam7), a decoder
 * cannot stream it row by row: libvips must hold the whole decoded image in memory.
 */
export function pngBomb(width: number, height: number, interlaced = false): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'ascii');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), data])), 0);
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // grayscale
  ihdr[12] = interlaced ? 1 : 0;
  // Rows of (filter byte + packed pixels), all zero: filter "none", black pixels. Adam7
  // stores seven reduced images (start x, start y, step x, step y), each row by row.
  const passes = interlaced
    ? [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]]
    : [[0, 0, 1, 1]];
  let size = 0;
  for (const [x, y, dx, dy] of passes) {
    const w = Math.ceil((width - x) / dx);
    const h = Math.ceil((height - y) / dy);
    if (w > 0 && h > 0) size += h * (1 + Math.ceil(w / 8));
  }
  const raw = Buffer.alloc(size);
  return Buffer.concat([
    Buffer.from('89504e470d0a1a0a', 'hex'),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
