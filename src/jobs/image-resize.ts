// The IMAGE_RESIZE job: validate parameters, inspect input bytes, resize with sharp.
// Pure: knows no database, queue, store or HTTP. Bytes (a buffer, a file, a stream) in,
// bytes out.
import type { Readable } from 'node:stream';
import sharp from 'sharp';
import type { FitEnum, FormatEnum, Metadata, OutputInfo, Sharp } from 'sharp';

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
  return { format: sniffed, ...displayedSize(metadata) };
}

/** The size of the first frame as the image is seen: EXIF orientations 5-8 swap the axes. */
function displayedSize(metadata: Metadata): { width: number; height: number } {
  const width = metadata.width;
  const height = metadata.pageHeight ?? metadata.height;
  const swapped = (metadata.orientation ?? 1) >= 5;
  return { width: swapped ? height : width, height: swapped ? width : height };
}

/** What outputSize needs of the source: its format (shrink-on-load) and displayed size. */
export type SourceSize = ImageInfo;
type OutputParams = Pick<ResizeParams, 'width' | 'height' | 'fit' | 'withoutEnlargement'>;

/** sharp's ResolveShrink (src/common.cc): the horizontal and vertical shrink factors. */
function resolveShrink(width: number, height: number, params: OutputParams): [number, number] {
  const targetWidth = params.width ?? 0;
  const targetHeight = params.height ?? 0;
  let h = 1;
  let v = 1;
  if (targetWidth > 0 && targetHeight > 0) {
    h = width / targetWidth;
    v = height / targetHeight;
    // COVER (crop) and OUTSIDE (min) shrink by the smaller factor, CONTAIN (embed) and INSIDE (max) by the larger.
    if (params.fit === 'COVER' || params.fit === 'OUTSIDE') h = v = Math.min(h, v);
    else if (params.fit === 'CONTAIN' || params.fit === 'INSIDE') h = v = Math.max(h, v);
  } else if (targetWidth > 0) {
    h = width / targetWidth;
    if (params.fit !== 'FILL') v = h;
  } else if (targetHeight > 0) {
    v = height / targetHeight;
    if (params.fit !== 'FILL') h = v;
  }
  if (params.withoutEnlargement) {
    h = Math.max(1, h);
    v = Math.max(1, v);
  }
  // Never shrink an axis to 0.
  return [Math.min(h, width), Math.min(v, height)];
}

/** libvips' rounding of a scaled size (round half up: VIPS_ROUND_UINT). */
const roundHalfUp = (value: number) => Math.floor(value + 0.5);
/** C's rint (round half to even), which libvips' WebP loader uses for its scaled size. */
function rint(value: number) {
  const floor = Math.floor(value);
  const fraction = value - floor;
  return fraction > 0.5 || (fraction === 0.5 && floor % 2 !== 0) ? floor + 1 : floor;
}

/**
 * The size of the result resizeImage makes of `source` with `params`, computed without
 * decoding, as sharp 0.35 / libvips 8.18 compute it (src/pipeline.cc): the shrink factors,
 * JPEG's and WebP's shrink-on-load (which round the source first), libvips' rounding, then
 * COVER's crop and CONTAIN's padding to the requested box. So COVER, CONTAIN and FILL with
 * both dimensions give exactly width x height (CONTAIN pads even withoutEnlargement); INSIDE,
 * OUTSIDE and a single dimension keep the aspect ratio. In display orientation: sharp swaps its
 * targets for an EXIF-rotated source, which comes to the same. test/image-resize.test.ts
 * checks it against sharp itself on random cases.
 */
export function outputSize(source: SourceSize, params: OutputParams): { width: number; height: number } {
  let { width, height } = source;
  let [h, v] = resolveShrink(width, height, params);
  const shrink = Math.min(h, v);
  if (source.format === 'JPEG') {
    // libjpeg's DCT scaling by 1/2, 1/4 or 1/8 (sharp's fastShrinkOnLoad default).
    let factor = shrink >= 8 ? 8 : shrink >= 4 ? 4 : shrink >= 2 ? 2 : 1;
    if (factor > 1 && Math.trunc(shrink) === factor) factor /= 2;
    width = Math.floor(width / factor);
    height = Math.floor(height / factor);
  } else if (source.format === 'WEBP' && shrink > 1) {
    width = rint(width * (1 / shrink));
    height = rint(height * (1 / shrink));
  }
  [h, v] = resolveShrink(width, height, params);
  if (h !== 1 || v !== 1) {
    width = roundHalfUp(width * (1 / h));
    height = roundHalfUp(height * (1 / v));
  }
  const boxWidth = params.width ?? width;
  const boxHeight = params.height ?? height;
  if (params.fit === 'COVER') return { width: Math.min(width, boxWidth), height: Math.min(height, boxHeight) };
  if (params.fit === 'CONTAIN') return { width: Math.max(width, boxWidth), height: Math.max(height, boxHeight) };
  return { width, height };
}

/**
 * Refuses parameters whose result would be over `maxOutputPixels` (InvalidResizeParams naming
 * the width, or the height when only that was given): a 1x1 image blown up to 16384x16384
 * would hold a worker for minutes and make a 268 MP result.
 */
export function checkOutputSize(source: SourceSize, params: ResizeParams, maxOutputPixels: number, prefix = 'resize'): void {
  const { width, height } = outputSize(source, params);
  if (width * height > maxOutputPixels) {
    throw new InvalidResizeParams(
      `the result would be ${width}x${height} = ${width * height} pixels, over the limit of ${maxOutputPixels} (MAX_OUTPUT_PIXELS)`,
      `${prefix}.${params.width === null ? 'height' : 'width'}`,
    );
  }
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

/** What resizeImage and resizeImageToFile share: the pipeline, and how its failures are told. */
async function resizePipeline(
  source: Uint8Array | string | Readable,
  params: ResizeParams,
  options: { maxInputPixels: number; maxOutputPixels: number; onStage?: (stage: ResizeStage, progress: number) => void },
): Promise<{ pipeline: Sharp; failure: (error: unknown) => unknown }> {
  const sharpOptions = { limitInputPixels: options.maxInputPixels, failOn: 'truncated', sequentialRead: true, pages: 1 } as const;
  // A file path or the bytes go to libvips as they are; a stream is piped in (sharp
  // collects a piped stream whole before decoding: give it a file where size matters).
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
  // Not the image's fault when the source itself failed: the caller decides.
  const failure = (error: unknown) => sourceError ?? vipsError('cannot process image', error);
  // The header (no decoding) says how big the result would be: refuse before any work. The API
  // refuses such parameters already; this catches tasks created before the limit was lowered.
  let metadata: Metadata;
  try {
    metadata = await input.metadata();
  } catch (error) {
    throw failure(error);
  }
  const format = SHARP_FORMATS[metadata.format ?? ''];
  if (!format || !metadata.width || !metadata.height) throw new UnsupportedImage('cannot process image: unreadable header');
  checkOutputSize({ format, ...displayedSize(metadata) }, params, options.maxOutputPixels);
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
  return { pipeline, failure };
}

/**
 * Resizes: auto-orients from EXIF, strips metadata (sharp keeps none unless asked),
 * decodes only the first frame, refuses truncated input. `onStage` reports progress points
 * (libvips runs decode, resize and encode as one streaming pipeline, so these are the
 * stage boundaries we can observe, not a continuous measure).
 */
export async function resizeImage(
  source: Uint8Array | string | Readable,
  params: ResizeParams,
  options: { maxInputPixels: number; maxOutputPixels: number; onStage?: (stage: ResizeStage, progress: number) => void },
): Promise<ResizeResult> {
  const { pipeline, failure } = await resizePipeline(source, params, options);
  let output: { data: Buffer; info: OutputInfo };
  try {
    output = await pipeline.toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw failure(error);
  }
  options.onStage?.('encode', 0.8);
  return { data: output.data, format: params.format, width: output.info.width, height: output.info.height };
}

/**
 * resizeImage, the result written to `file` by libvips as it is encoded: no buffer of the
 * result is ever held (sharp's stream output would hand it over whole). With `source` a
 * file path too, the process's memory does not grow with the size of either file.
 */
export async function resizeImageToFile(
  source: Uint8Array | string | Readable,
  params: ResizeParams,
  file: string,
  options: { maxInputPixels: number; maxOutputPixels: number; onStage?: (stage: ResizeStage, progress: number) => void },
): Promise<ImageInfo & { byteSize: number }> {
  const { pipeline, failure } = await resizePipeline(source, params, options);
  let info: OutputInfo;
  try {
    info = await pipeline.toFile(file);
  } catch (error) {
    throw failure(error);
  }
  options.onStage?.('encode', 0.8);
  return { format: params.format, width: info.width, height: info.height, byteSize: info.size };
}
