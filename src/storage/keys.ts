// Blob keys are a security boundary: on disk a key becomes a path under the store's root,
// so a key may never climb out of it or name something that is not a blob.
//
// A key is 1-512 characters of segments joined by "/"; each segment is lower-case letters,
// digits, "-", "_" and ".", and never starts with "." (so no ".", "..", hidden files, and
// nothing that collides with the store's own ".tmp" area or ".check" probe).
import { InvalidBlobKey } from './errors.ts';

const SEGMENT = /^[a-z0-9_-][a-z0-9._-]*$/;
const MAX_KEY_LENGTH = 512;

export function assertValidKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new InvalidBlobKey(String(key), 'empty');
  if (key.length > MAX_KEY_LENGTH) throw new InvalidBlobKey(key, `longer than ${MAX_KEY_LENGTH} characters`);
  for (const segment of key.split('/')) {
    if (!SEGMENT.test(segment)) throw new InvalidBlobKey(key, 'segments are [a-z0-9._-], not starting with "."');
  }
}

export function isValidKey(key: string): boolean {
  try {
    assertValidKey(key);
    return true;
  } catch {
    return false;
  }
}

/**
 * A list prefix: empty, or a key's beginning (it may end with "/" or in the middle of a
 * segment). Checked with the same alphabet so listing cannot wander either.
 */
export function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  assertValidKey(trimmed === '' ? '/' : trimmed);
}
