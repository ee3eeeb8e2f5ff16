// How Tasklane's images sit in the blob store: one blob per Image row, under a key made
// from the row's id (never reused: a new image is a new row), stored with its content type.

/** The key of an image's blob. */
export function imageKey(imageId: string): string {
  return `images/${imageId}`;
}

const CONTENT_TYPES: Record<string, string> = {
  JPEG: 'image/jpeg',
  PNG: 'image/png',
  WEBP: 'image/webp',
  AVIF: 'image/avif',
  GIF: 'image/gif',
  TIFF: 'image/tiff',
};

/** The Content-Type of an image format (ImageFormat). */
export function imageContentType(format: string): string {
  return CONTENT_TYPES[format] ?? 'application/octet-stream';
}
