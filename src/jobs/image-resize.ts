// The IMAGE_RESIZE job: validate parameters, inspect input bytes, resize with sharp.
// Pure: knows no database, queue, store or HTTP. Bytes (a buffer, a file, a stream) in,
// bytes out.
import type { Readable } from 'node:stream';
import sharp from 'sharp';
import type { FitEnum, FormatEnum, Metadata, OutputInfo } from 'sharp';

export const IMAGE_FORMATS = ['JPEG', 'PNG', 'WEBP', 'AVIF', 'GIF', 'TIFF'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];
export const RESIZE_FITS = ['COVER', 'CONTAIN', 'FILL', 'INSIDE', 'OUTSIDE'] as const;
export type ResizeFit = (typeof RESIZE_FITS)[number];

/** Validated, fully resolved parameters, as stored in Task.params. */
export interface ResizeParams {
  width: number | null;
  height: number | null;
  fit: ResizeFit;
  format: ImageFormat;
  quality: number | null;
  withoutEnlargement: boolean;
}

export interface ResizeInput {
  width?: number | null;
  height?: number | null;
  fit?: ResizeFit | null;
  format?: ImageFormat | null;
  quality?: number | null;
  withoutEnlargement?: boolean | null;
}

export const MAX_DIMENSION = 16384;

/** A parameter is out of range; `field` names it (e.g. "resize.width"). */
export class InvalidResizeParams extends Error {
  override name = 'InvalidResizeParams';
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
  }
}

/** The bytes are not an image we accept (format, size, corruption). Never worth a retry. */
export class UnsupportedImage extends Error {
  override name = 'UnsupportedImage';
}

/** The header could not be read: from just the head of an image, more bytes may help. */
export class UnreadableHeader extends UnsupportedImage {
  override name = 'UnreadableHeader';
}

// What libvips says about bad input can be dozens of lines of its internals (loader names,
// seek offsets, library versions: an SVG behind an AVIF header gave 34 lines). Clients and
// task errors get one short reason; the full text stays on the error's `cause`.
const VIPS_REASONS: [RegExp, string][] = [
  [/exceeds pixel limit/i, 'the image exceeds the pixel limit'],
  [/unsupported image format/i, 'unsupported image format'],
  [/corrupt header/i, 'corrupt image header'],
  [/premature end|unexpected end|end of (input|file)|insufficient input|truncated/i, 'the image data is truncated'],
];

/** The only way a libvips error reaches a message: as a short reason, nothing internal. */
export function vipsError(what: string, error: unknown): UnsupportedImage {
  const text = String((error as Error)?.message ?? error);
  const reason = VIPS_REASONS.find(([pattern]) => pattern.test(text))?.[1] ?? 'corrupt image data';
  return new UnsupportedImage(`${what}: ${reason}`, { cause: error });
}

// Loaders Tasklane never needs: blocking them means hostile input cannot reach them even
// if it got past the magic-byte allow-list.
sharp.block({
  operation: [
    'VipsForeignLoadSvg',
    'VipsForeignLoadPdf',
    'VipsForeignLoadMagick',
    'VipsForeignLoadOpenslide',
    'VipsForeignLoadFits',
    'VipsForeignLoadMat',
    'VipsForeignLoadVips',
    'VipsForeignLoadRaw',
    'VipsForeignLoadCsv',
    'VipsForeignLoadMatrix',
    'VipsForeignLoadPpm',
    'VipsForeignLoadRad',
    'VipsForeignLoadAnalyze',
    'VipsForeignLoadJxl',
    'VipsForeignLoadJp2k',
  ],
});
// libvips' operation cache only helps repeated identical operations; every job is new.
sharp.cache(false);

export function validateResizeInput(input: ResizeInput, sourceFormat: ImageFormat, prefix = 'resize'): ResizeParams {
  const dimension = (value: number | null | undefined, name: string) => {
    if (value === null || value === undefined) return null;
    if (!Number.isInteger(value) || value < 1 || value > MAX_DIMENSION) {
      throw new InvalidResizeParams(`${name} must be an integer from 1 to ${MAX_DIMENSION}, got ${value}`, `${prefix}.${name}`);
    }
    return value;
  };
  const width = dimension(input.width, 'width');
  const height = dimension(input.height, 'height');
  if (width === null && height === null) {
    throw new InvalidResizeParams('give at least one of width and height', `${prefix}.width`);
  }
  const quality = input.quality ?? null;
  if (quality !== null && (!Number.isInteger(quality) || quality < 1 || quality > 100)) {
    throw new InvalidResizeParams(`quality must be an integer from 1 to 100, got ${quality}`, `${prefix}.quality`);
  }
  const fit = input.fit ?? 'COVER';
  if (!RESIZE_FITS.includes(fit)) throw new InvalidResizeParams(`fit must be one of ${RESIZE_FITS.join(', ')}`, `${prefix}.fit`);
  const format = input.format ?? sourceFormat;
  if (!IMAGE_FORMATS.includes(format)) {
    throw new InvalidResizeParams(`format must be one of ${IMAGE_FORMATS.join(', ')}`, `${prefix}.format`);
  }
  return { width, height, fit, format, quality, withoutEnlargement: input.withoutEnlargement ?? false };
}

/** The format the bytes say they are (magic numbers), never the file name or content type. */
export function sniffFormat(bytes: Uint8Array): ImageFormat | null {
  const at = (offset: number, ...values: number[]) => values.every((value, i) => bytes[offset + i] === value);
  const ascii = (offset: number, text: string) => at(offset, ...[...text].map((c) => c.charCodeAt(0)));
  if (bytes.length < 12) return null;
  if (at(0, 0xff, 0xd8, 0xff)) return 'JPEG';
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'PNG';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'GIF';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'WEBP';
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return 'TIFF';
  if (ascii(4, 'ftyp')) {
    // ISO-BMFF: AVIF if the major or a compatible brand says so (HEIC and video are refused).
    const boxSize = Math.min(((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0, bytes.length, 256);
    for (let offset = 8; offset + 4 <= boxSize; offset += offset === 8 ? 8 : 4) {
      if (ascii(offset, 'avif') || ascii(offset, 'avis')) return 'AVIF';
    }
  }
  return null;
}

export interface ImageInfo {
  format: ImageFormat;
  width: number;
  height: number;
}

const SHARP_FORMATS: Record<string, ImageFormat | undefined> = {
  jpeg: 'JPEG',
  png: 'PNG',
  webp: 'WEBP',
  heif: 'AVIF',
  gif: 'GIF',
  tiff: 'TIFF',
};

/**
 * Reads format and size from the header only (no decoding), so a small file that claims
 * a huge size is refused in milliseconds. For animated input only the first frame counts.
 * `bytes` may be just the head of the image (the format is sniffed from it); `whole`, when
 * given, is the complete image (a file path or the bytes) for the header to be read from.
 */
export async function inspectImage(bytes: Uint8Array, maxInputPixels: number, whole?: string | Uint8Array): Promise<ImageInfo> {
  const sniffed = sniffFormat(bytes);
  if (!sniffed) {
    throw new UnsupportedImage(`not a supported raster image (expected ${IMAGE_FORMATS.join(', ')}; detected from its bytes)`);
  }
  let metadata: Metadata;
  try {
    metadata = await sharp(whole ?? bytes, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw new UnreadableHeader(vipsError(`unreadable ${sniffed} image`, error).message, { cause: error });
  }
  if (SHARP_FORMATS[metadata.format ?? ''] !== sniffed || !metadata.width || !metadata.height) {
    throw new UnreadableHeader(`unreadable ${sniffed} image: its header does not describe a ${sniffed} image`);
  }
  const width = metadata.width;
  const height = metadata.pageHeight ?? metadata.height;
  if (width * height > maxInputPixels) {
    throw new UnsupportedImage(
      `image is ${width}x${height} = ${width * height} pixels, over the limit of ${maxInputPixels} (MAX_INPUT_PIXELS)`,
    );
  }
  // EXIF orientations 5-8 swap the axes; report the size the image is seen at.
  const swapped = (metadata.orientation ?? 1) >= 5;
  return { format: sniffed, width: swapped ? height : width, height: swapped ? width : height };
}

export type ResizeStage = 'decode' | 'resize' | 'encode';

export interface ResizeResult extends ImageInfo {
  data: Buffer;
}

const ENCODERS: Record<ImageFormat, keyof FormatEnum | 'avif'> = {
  JPEG: 'jpeg',
  PNG: 'png',
  WEBP: 'webp',
  AVIF: 'avif',
  GIF: 'gif',
  TIFF: 'tiff',
};

/**
 * Resizes: auto-orients from EXIF, strips metadata (sharp keeps none unless asked),
 * decodes only the first frame, refuses truncated input. `onStage` reports progress points
 * (libvips runs decode, resize and encode as one streaming pipeline, so these are the
 * stage boundaries we can observe, not a continuous measure).
 */
export async function resizeImage(
  source: Uint8Array | string | Readable,
  params: ResizeParams,
  options: { maxInputPixels: number; onStage?: (stage: ResizeStage, progress: number) => void },
): Promise<ResizeResult> {
  const sharpOptions = { limitInputPixels: options.maxInputPixels, failOn: 'truncated', sequentialRead: true, pages: 1 } as const;
  // A file path or the bytes go to libvips as they are; a stream is piped in.
  const fromStream = typeof source === 'object' && !(source instanceof Uint8Array);
  const input = fromStream ? sharp(sharpOptions) : sharp(source, sharpOptions);
  let sourceError: unknown;
  if (fromStream) {
    // A source failing mid-stream (the store cut off) fails the job with its own error.
    source.once('error', (error) => {
      sourceError = error;
      input.destroy(error);
    });
    source.pipe(input);
  }
  options.onStage?.('decode', 0.1);
  const pipeline = input
    .rotate()
    .resize({
      width: params.width ?? undefined,
      height: params.height ?? undefined,
      fit: params.fit.toLowerCase() as keyof FitEnum,
      withoutEnlargement: params.withoutEnlargement,
    })
    .toFormat(ENCODERS[params.format], params.quality === null ? {} : { quality: params.quality });
  options.onStage?.('resize', 0.3);
  let output: { data: Buffer; info: OutputInfo };
  try {
    output = await pipeline.toBuffer({ resolveWithObject: true });
  } catch (error) {
    if (sourceError) throw sourceError; // not the image's fault: the caller decides
    throw vipsError('cannot process image', error);
  }
  options.onStage?.('encode', 0.8);
  return { data: output.data, format: params.format, width: output.info.width, height: output.info.height };
}
