// Photo-like JPEGs made on the fly (no binary fixtures): smooth gradients, shapes and
// mild grain, so that JPEG decode/encode costs what it costs on a real photo.
import sharp from 'sharp';

/**
 * A width x height JPEG (q90, 4:2:0, as a camera writes). sharp's own benchmark uses a
 * 2725x2225 photo of about 800 KB; `seed` varies the picture so files are not identical.
 */
export async function photo(width: number, height: number, seed = 0, quality = 90): Promise<Buffer> {
  const shapes = Array.from({ length: 12 }, (_, i) => {
    const r = ((i * 7919 + seed * 104729) % 97) / 97;
    const cx = Math.round(width * ((r * 13) % 1));
    const cy = Math.round(height * ((r * 29) % 1));
    const radius = Math.round(Math.min(width, height) * (0.05 + 0.2 * ((r * 3) % 1)));
    const hue = Math.round(360 * ((r * 5) % 1));
    return `<circle cx="${cx}" cy="${cy}" r="${radius}" fill="hsl(${hue},60%,55%)" fill-opacity="0.6"/>`;
  }).join('');
  const svg = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
      <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
        <stop offset="0" stop-color="hsl(${(seed * 37) % 360},50%,30%)"/><stop offset="1" stop-color="hsl(${(seed * 37 + 140) % 360},60%,75%)"/>
      </linearGradient></defs>
      <rect width="100%" height="100%" fill="url(#g)"/>${shapes}
    </svg>`,
  );
  const grain = await sharp({
    create: { width, height, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 10 } },
  })
    .png({ compressionLevel: 0 })
    .toBuffer();
  const base = await sharp(svg).png({ compressionLevel: 0 }).toBuffer();
  return sharp(base)
    .composite([{ input: grain, blend: 'soft-light' }])
    .jpeg({ quality, chromaSubsampling: '4:2:0' })
    .toBuffer();
}
