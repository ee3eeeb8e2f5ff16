// The IMAGE_RESIZE job on its own: parameters, format detection, the resize itself.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  checkOutputSize,
  inspectImage,
  InvalidResizeParams,
  outputSize,
  resizeImage,
  sniffFormat,
  UnsupportedImage,
  validateResizeInput,
  type ImageFormat,
  type ResizeParams,
} from '../src/jobs/image-resize.ts';
import { photo, pngClaiming, rotatedJpeg } from './helpers/images.ts';

const LIMITS = { maxInputPixels: 1e8, maxOutputPixels: 1e8 };

const params = (p: Partial<ResizeParams>): ResizeParams => ({
  width: null,
  height: null,
  fit: 'COVER',
  format: 'JPEG',
  quality: null,
  withoutEnlargement: false,
  ...p,
});

describe('validateResizeInput', () => {
  it('resolves defaults: COVER, the source format, enlargement allowed', () => {
    expect(validateResizeInput({ width: 100 }, 'PNG')).toEqual(params({ width: 100, format: 'PNG' }));
  });

  it.each([
    [{}, 'resize.width', /at least one of width and height/],
    [{ width: 0 }, 'resize.width', /1 to 16384/],
    [{ width: 16385 }, 'resize.width', /1 to 16384/],
    [{ height: -3 }, 'resize.height', /1 to 16384/],
    [{ width: 10, quality: 0 }, 'resize.quality', /1 to 100/],
    [{ width: 10, quality: 101 }, 'resize.quality', /1 to 100/],
  ])('refuses %j naming %s', (input, field, message) => {
    let error: unknown;
    try {
      validateResizeInput(input, 'JPEG');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidResizeParams);
    expect((error as InvalidResizeParams).field).toBe(field);
    expect((error as Error).message).toMatch(message);
  });
});

describe('sniffFormat', () => {
  it.each(['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif'] as const)('recognises %s from its bytes', async (format) => {
    const bytes = await photo(32, 24, format);
    expect(sniffFormat(bytes)).toBe(format === 'jpeg' ? 'JPEG' : format.toUpperCase());
  });

  it('refuses SVG, PDF and text whatever they are called', () => {
    expect(sniffFormat(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'))).toBeNull();
    expect(sniffFormat(Buffer.from('%PDF-1.7\n1 0 obj << >> endobj\n'))).toBeNull();
    expect(sniffFormat(Buffer.from('hello world, not an image'))).toBeNull();
  });
});

describe('inspectImage', () => {
  it('reads size from the header; a pixel bomb is refused without decoding', async () => {
    const bomb = await pngClaiming(12_000, 12_000);
    const started = performance.now();
    await expect(inspectImage(bomb, 50_000_000)).rejects.toThrow(/12000x12000 = 144000000 pixels, over the limit/);
    expect(bomb.byteLength).toBeLessThan(1000);
    // (How fast: see bench/; here only that it is refused.)
    expect(performance.now() - started).toBeGreaterThan(0);
  });

  it('reports the displayed size of an EXIF-rotated image', async () => {
    const info = await inspectImage(await rotatedJpeg(40, 20), 1e6);
    expect(info).toEqual({ format: 'JPEG', width: 20, height: 40 });
  });

  it('refuses a corrupt header', async () => {
    const bytes = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, 7)]);
    await expect(inspectImage(bytes, 1e6)).rejects.toBeInstanceOf(UnsupportedImage);
  });
});

describe('resizeImage', () => {
  it.each([
    ['COVER', 100, 100, 100, 100],
    ['CONTAIN', 100, 100, 100, 100],
    ['FILL', 100, 100, 100, 100],
    ['INSIDE', 100, 100, 100, 75],
    ['OUTSIDE', 100, 100, 133, 100],
  ] as const)('fit %s into %dx%d gives %dx%d', async (fit, width, height, outWidth, outHeight) => {
    const source = await photo(400, 300);
    const result = await resizeImage(source, params({ width, height, fit }), LIMITS);
    expect([result.width, result.height]).toEqual([outWidth, outHeight]);
    const meta = await sharp(result.data).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([outWidth, outHeight, 'jpeg']);
  });

  it('converts format, honours quality and withoutEnlargement, strips metadata', async () => {
    const source = await sharp(await photo(200, 100)).withMetadata({ exif: { IFD0: { Copyright: 'someone' } } }).jpeg().toBuffer();
    const webp = await resizeImage(source, params({ width: 1000, format: 'WEBP', withoutEnlargement: true, quality: 50 }), LIMITS);
    const meta = await sharp(webp.data).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['webp', 200, 100]);
    expect(meta.exif).toBeUndefined();
    const low = await resizeImage(source, params({ width: 200, quality: 10 }), LIMITS);
    const high = await resizeImage(source, params({ width: 200, quality: 95 }), LIMITS);
    expect(low.data.byteLength).toBeLessThan(high.data.byteLength);
  });

  it('auto-orients from EXIF: a 40x20 stored image with orientation 6 comes out portrait', async () => {
    const result = await resizeImage(await rotatedJpeg(40, 20), params({ height: 80 }), LIMITS);
    expect([result.width, result.height]).toEqual([40, 80]);
    expect((await sharp(result.data).metadata()).orientation).toBeUndefined();
  });

  it('takes only the first frame of an animated GIF', async () => {
    // Distinct frames: the GIF encoder merges identical ones.
    const frame = (color: string) => sharp({ create: { width: 20, height: 20, channels: 4, background: color } }).png().toBuffer();
    const frames = await Promise.all(['#f00', '#0f0', '#00f'].map(frame));
    const animated = await sharp(frames, { join: { animated: true } }).gif().toBuffer();
    expect((await sharp(animated).metadata()).pages).toBe(3);
    expect(await inspectImage(animated, 1e6)).toEqual({ format: 'GIF', width: 20, height: 20 });
    const result = await resizeImage(animated, params({ width: 10, format: 'GIF' }), LIMITS);
    expect([result.width, result.height]).toEqual([10, 10]);
    expect((await sharp(result.data).metadata()).pages ?? 1).toBe(1);
  });

  it('fails on a truncated JPEG (no partial output)', async () => {
    const whole = await photo(300, 200);
    const truncated = whole.subarray(0, Math.floor(whole.byteLength / 2));
    await expect(resizeImage(truncated, params({ width: 50 }), LIMITS)).rejects.toBeInstanceOf(UnsupportedImage);
  });

  it('refuses input over the pixel limit', async () => {
    await expect(resizeImage(await photo(300, 200), params({ width: 50 }), { ...LIMITS, maxInputPixels: 1000 })).rejects.toThrow(/pixel limit/);
  });
});

describe('outputSize', () => {
  // A deterministic pseudo-random sequence, so a failure can be replayed.
  let seed = 20261130;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const between = (low: number, high: number) => low + Math.floor(random() * (high - low + 1));
  const FITS = ['COVER', 'CONTAIN', 'FILL', 'INSIDE', 'OUTSIDE'] as const;
  const SOURCES = [
    ['JPEG', 'jpeg'], // shrink-on-load by 2, 4 or 8 rounds the source first
    ['WEBP', 'webp'], // shrink-on-load by any factor, rounded its own way
    ['PNG', 'png'],
  ] as const;

  it('predicts exactly the size sharp gives, for every fit, with and without enlargement (random cases)', async () => {
    const mismatches: string[] = [];
    let checked = 0;
    for (let i = 0; checked < 450; i++) {
      const [format, encoder] = SOURCES[i % SOURCES.length];
      // Small and large sources, extreme aspect ratios, one or both dimensions, up- and downscaling.
      const source = { format: format as ImageFormat, width: between(1, random() < 0.3 ? 40 : 900), height: between(1, random() < 0.3 ? 40 : 900) };
      const given = between(0, 2);
      const p = params({
        width: given !== 2 ? between(1, random() < 0.5 ? 60 : 1200) : null,
        height: given !== 1 ? between(1, random() < 0.5 ? 60 : 1200) : null,
        fit: FITS[between(0, 4)],
        withoutEnlargement: random() < 0.3,
        format: 'PNG',
      });
      const predicted = outputSize(source, p);
      if (predicted.width * predicted.height > 400_000) continue; // keep the test quick
      checked++;
      const bytes = await sharp({ create: { width: source.width, height: source.height, channels: 3, background: '#808080' } })
        .toFormat(encoder)
        .toBuffer();
      const result = await resizeImage(bytes, p, LIMITS);
      if (result.width !== predicted.width || result.height !== predicted.height) {
        mismatches.push(`${JSON.stringify({ source, ...p })}: predicted ${predicted.width}x${predicted.height}, sharp ${result.width}x${result.height}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('works in display orientation: an EXIF-rotated JPEG gives what sharp gives', async () => {
    for (const p of [params({ width: 33 }), params({ height: 7 }), params({ width: 50, height: 9, fit: 'INSIDE' }), params({ width: 5, height: 61, fit: 'OUTSIDE' })]) {
      const bytes = await rotatedJpeg(400, 90); // stored 400x90, seen 90x400
      const result = await resizeImage(bytes, p, LIMITS);
      expect(outputSize({ format: 'JPEG', width: 90, height: 400 }, p)).toEqual({ width: result.width, height: result.height });
    }
  });

  it('gives COVER, CONTAIN and FILL exactly the box, and CONTAIN pads even without enlargement', () => {
    const tiny = { format: 'PNG' as const, width: 1, height: 1 };
    for (const fit of ['COVER', 'CONTAIN', 'FILL'] as const) {
      expect(outputSize({ format: 'JPEG', width: 4000, height: 3000 }, params({ width: 640, height: 640, fit }))).toEqual({ width: 640, height: 640 });
    }
    expect(outputSize(tiny, params({ width: 16384, height: 16384 }))).toEqual({ width: 16384, height: 16384 });
    expect(outputSize(tiny, params({ width: 16384, height: 16384, fit: 'CONTAIN', withoutEnlargement: true }))).toEqual({ width: 16384, height: 16384 });
    expect(outputSize(tiny, params({ width: 16384, height: 16384, withoutEnlargement: true }))).toEqual({ width: 1, height: 1 });
    expect(outputSize({ format: 'PNG', width: 2, height: 1 }, params({ width: 16384 }))).toEqual({ width: 16384, height: 8192 });
  });
});

describe('checkOutputSize', () => {
  const tiny = { format: 'PNG' as const, width: 1, height: 1 };

  it.each([
    [params({ width: 16384, height: 16384 }), 'resize.width', '16384x16384 = 268435456'],
    [params({ height: 16384, fit: 'FILL', width: null }), 'resize.height', '1x16384 = 16384'],
  ])('refuses %j naming %s', (p, field, size) => {
    const limit = p.width ? 50_000_000 : 10_000;
    let error: unknown;
    try {
      checkOutputSize(tiny, p, limit);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidResizeParams);
    expect((error as InvalidResizeParams).field).toBe(field);
    expect((error as Error).message).toBe(`the result would be ${size} pixels, over the limit of ${limit} (MAX_OUTPUT_PIXELS)`);
  });

  it('lets a result of exactly the limit through, and counts what sharp makes, not what was asked', () => {
    expect(() => checkOutputSize(tiny, params({ width: 5000, height: 10_000 }), 50_000_000)).not.toThrow();
    expect(() => checkOutputSize(tiny, params({ width: 5001, height: 10_000 }), 50_000_000)).toThrow(InvalidResizeParams);
    // Without enlargement a 1x1 COVER stays 1x1, however big the box.
    expect(() => checkOutputSize(tiny, params({ width: 16384, height: 16384, withoutEnlargement: true }), 50_000_000)).not.toThrow();
  });

  it('is enforced by resizeImage itself, from the header, before any work (a 69-byte PNG to 16384x16384 AVIF)', async () => {
    const onePixel = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#fff' } }).png().toBuffer();
    const stages: string[] = [];
    await expect(
      resizeImage(onePixel, params({ width: 16384, height: 16384, format: 'AVIF' }), {
        maxInputPixels: 1e8,
        maxOutputPixels: 50_000_000,
        onStage: (stage) => stages.push(stage),
      }),
    ).rejects.toThrow(/16384x16384 = 268435456 pixels, over the limit of 50000000 \(MAX_OUTPUT_PIXELS\)/);
    expect(stages).toEqual([]); // refused from the header, before decoding (the encode itself takes minutes)
  });
});

describe("libvips' errors", () => {
  // An SVG behind an AVIF file-type box: libvips' own message is 34 lines of seek offsets.
  const box = Buffer.alloc(24);
  box.writeUInt32BE(24, 0);
  box.write('ftypavifmif1miaf', 4);
  const fakeAvif = Buffer.concat([box, Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>')]);

  it.each([
    ['an SVG behind an AVIF header', () => inspectImage(fakeAvif, 1e6), 'unreadable AVIF image: corrupt image header'],
    ['a JPEG cut in half', async () => resizeImage((await photo(300, 200)).subarray(0, 2000), params({ width: 50 }), LIMITS), 'cannot process image: the image data is truncated'],
    ['an AVIF cut in half', async () => resizeImage((await photo(300, 200, 'avif')).subarray(0, 1000), params({ width: 50 }), LIMITS), 'cannot process image: the image data is truncated'],
    ['input over the pixel limit', async () => resizeImage(await photo(300, 200), params({ width: 50 }), { ...LIMITS, maxInputPixels: 1000 }), 'cannot process image: the image exceeds the pixel limit'],
  ])('reach the message only as one short reason: %s', async (_, run, message) => {
    const error = (await run().catch((e: unknown) => e)) as UnsupportedImage;
    expect(error).toBeInstanceOf(UnsupportedImage);
    expect(error.message).toBe(message);
    expect(String((error.cause as Error).message)).toMatch(/\S/); // the details stay on the cause, for the log
  });
});
