// Test images made on the fly with sharp (no binary fixtures in the repository).
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
