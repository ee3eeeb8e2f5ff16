// API keys: a key is shown once, at creation; only its sha-256 is stored. A key's `name`
// is its tenant: every task and image belongs to a name, so a key can be rotated
// (revoke, create with the same name) without losing the tasks.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { prisma } from '../db.ts';
import { onRevocation, publishRevocation } from './events.ts';

export interface Caller {
  keyId: string;
  /** The tenant every task and image of this caller belongs to. */
  owner: string;
}

const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');

export async function createKey(name: string): Promise<string> {
  if (!/^[\w.@-]{1,100}$/.test(name)) throw new Error('a key name is 1-100 letters, digits, _ . @ or -');
  const key = `tl_${randomBytes(32).toString('base64url')}`;
  await prisma.apiKey.create({ data: { name, keyHash: hashKey(key) } });
  return key;
}

/** Revokes every key of `name` and tells every API process (open subscriptions end). */
export async function revokeKeys(name: string): Promise<number> {
  const { count } = await prisma.apiKey.updateMany({ where: { name, revokedAt: null }, data: { revokedAt: new Date() } });
  await publishRevocation(name);
  return count;
}

// A short cache keeps a database round trip off every request; a revocation anywhere
// clears it at once (pub/sub), the TTL bounds staleness if that message were lost.
const CACHE_TTL_MS = 10_000;
const cache = new Map<string, { caller: Caller | null; until: number }>();
let listening: Promise<unknown> | undefined;

export async function authenticate(key: string | null | undefined): Promise<Caller | null> {
  if (!key || key.length > 200) return null;
  listening ??= onRevocation(() => cache.clear()).catch(() => {
    listening = undefined;
  });
  const hash = hashKey(key);
  const hit = cache.get(hash);
  if (hit && hit.until > Date.now()) return hit.caller;
  const row = await prisma.apiKey.findUnique({ where: { keyHash: hash } });
  // The lookup is by hash; comparing the hashes again in constant time costs nothing
  // and keeps the check independent of how the index compares strings.
  const valid = row !== null && row.revokedAt === null && timingSafeEqual(Buffer.from(row.keyHash), Buffer.from(hash));
  const caller = valid ? { keyId: row.id, owner: row.name } : null;
  if (cache.size > 10_000) cache.clear();
  cache.set(hash, { caller, until: Date.now() + CACHE_TTL_MS });
  return caller;
}

/** The key from `Authorization: Bearer <key>` (or a bare key). */
export function bearerKey(header: string | null | undefined): string | null {
  if (!header) return null;
  const match = /^\s*Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : header.trim() || null;
}
