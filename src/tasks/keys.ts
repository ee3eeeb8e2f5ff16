// API keys: a key is shown once, at creation; only its sha-256 is stored. A key's `name`
// is its tenant: every task and image belongs to a name, so a key can be rotated
// (revoke, create with the same name) without losing the tasks.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { prisma } from '../db.ts';
import { sign } from '../image-urls.ts';
import { onRevocation, publishRevocation } from './events.ts';

export interface Caller {
  keyId: string;
  /** The tenant every task and image of this caller belongs to. */
  owner: string;
}

const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');

const KEY_NAME = /^[\w.@-]{1,100}$/;

export async function createKey(name: string): Promise<string> {
  if (!KEY_NAME.test(name)) throw new Error('a key name is 1-100 letters, digits, _ . @ or -');
  const key = `tl_${randomBytes(32).toString('base64url')}`;
  // A new key of a name carries the name's callback secret (rotating keys keeps it); the first
  // key of a name gets a new one.
  await prisma.$executeRaw`
    INSERT INTO "ApiKey" ("id", "name", "keyHash", "callbackSecret")
    SELECT gen_random_uuid(), ${name}, ${hashKey(key)},
      COALESCE((SELECT "callbackSecret" FROM "ApiKey" WHERE "name" = ${name} ORDER BY "createdAt", "id" LIMIT 1), ${newCallbackSecret()})`;
  return key;
}

/** A Standard Webhooks signing secret: `whsec_` and the base64 of 32 random bytes. */
export function newCallbackSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/**
 * The callback signing secret of key name `name` (null if it has no key): its oldest key's,
 * which every later key of the name copies, so two keys created at once for a new name
 * still give one answer.
 */
export async function callbackSecret(name: string): Promise<string | null> {
  const row = await prisma.apiKey.findFirst({ where: { name }, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }], select: { callbackSecret: true } });
  return row?.callbackSecret ?? null;
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
  const hash = hashKey(key);
  return cached(hash, async () => {
    const row = await prisma.apiKey.findUnique({ where: { keyHash: hash } });
    // The lookup is by hash; comparing the hashes again in constant time costs nothing
    // and keeps the check independent of how the index compares strings.
    const valid = row !== null && row.revokedAt === null && timingSafeEqual(Buffer.from(row.keyHash), Buffer.from(hash));
    return valid ? { keyId: row.id, owner: row.name } : null;
  });
}

/** A key lookup through the cache (by the key's hash, or `id:<key id>` for a ticket). */
async function cached(entry: string, lookup: () => Promise<Caller | null>): Promise<Caller | null> {
  listening ??= onRevocation(() => cache.clear()).catch(() => {
    listening = undefined;
  });
  const hit = cache.get(entry);
  if (hit && hit.until > Date.now()) return hit.caller;
  const caller = await lookup();
  if (cache.size > 10_000) cache.clear();
  cache.set(entry, { caller, until: Date.now() + CACHE_TTL_MS });
  return caller;
}

// Stream tickets: an EventSource cannot send headers, and a key in its URL ends up in access
// logs and browser history. A client trades its key (in the Authorization header) for a
// ticket, `<key id>.<expiry, unix s>.<HMAC>`, which src/http/yoga.ts accepts only as
// `?ticket=` of an SSE subscription (GET, Accept: text/event-stream). Stateless: any API
// process checks it with the shared signing secret, no store involved. Bound to the key's
// id, so a ticket of a key revoked since opens nothing.
export const STREAM_TICKET_TTL_SECONDS = 60;
const TICKET_PURPOSE = 'stream-ticket';

export function createStreamTicket(caller: Caller, now = Date.now()): { ticket: string; expiresAt: Date } {
  const expires = Math.floor(now / 1000) + STREAM_TICKET_TTL_SECONDS;
  const signature = sign(`${TICKET_PURPOSE}.${caller.keyId}`, expires);
  return { ticket: `${caller.keyId}.${expires}.${signature}`, expiresAt: new Date(expires * 1000) };
}

/** The caller of a stream ticket: signed by us, not expired, and of a key not revoked. */
export async function authenticateStreamTicket(ticket: string | null | undefined, now = Date.now()): Promise<Caller | null> {
  const match = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.([1-9]\d{0,11})\.([\w-]{43})$/.exec(ticket ?? '');
  if (!match) return null;
  const [, keyId, expires, signature] = match;
  const expected = Buffer.from(sign(`${TICKET_PURPOSE}.${keyId}`, Number(expires)));
  if (!timingSafeEqual(expected, Buffer.from(signature)) || Number(expires) * 1000 <= now) return null;
  return authenticateKeyId(keyId);
}

/** The caller of a key known by its id (from a ticket or reservation we signed), unless revoked. */
export function authenticateKeyId(keyId: string): Promise<Caller | null> {
  return cached(`id:${keyId}`, async () => {
    const row = await prisma.apiKey.findUnique({ where: { id: keyId } });
    return row !== null && row.revokedAt === null ? { keyId: row.id, owner: row.name } : null;
  });
}

// Stream reservations: the single-connection mode of the GraphQL over SSE protocol
// (src/http/sse-single.ts). `PUT /graphql` with a key answers a reservation token,
// `sse.<key id>.<expiry, unix s>.<nonce>.<HMAC>`: the event stream that fulfils it (a GET
// with the token, no key needed) and the operations sent to that stream carry it instead of
// the key. Like a ticket it is stateless and checked by any API process with the signing
// secret; its nonce names the stream. The `sse.` prefix tells it apart from a key (`tl_…`)
// and a ticket (a UUID first) wherever a `?token=` may be either.
export const STREAM_RESERVATION_TTL_SECONDS = 60;
const RESERVATION_PURPOSE = 'stream-reservation';
const RESERVATION_PREFIX = 'sse.';

export interface StreamReservation {
  keyId: string;
  /** Unix ms after which the reservation opens no stream (an open one stays open). */
  expiresAt: number;
  /** Names the stream: its Redis channel and claim. */
  nonce: string;
}

export function createStreamReservation(caller: Caller, now = Date.now()): string {
  const expires = Math.floor(now / 1000) + STREAM_RESERVATION_TTL_SECONDS;
  const nonce = randomBytes(16).toString('base64url');
  const signature = sign(`${RESERVATION_PURPOSE}.${caller.keyId}.${nonce}`, expires);
  return `${RESERVATION_PREFIX}${caller.keyId}.${expires}.${nonce}.${signature}`;
}

/** Whether a `?token=` value is meant as a reservation (not an API key): by its form alone. */
export function isStreamReservation(token: string | null | undefined): boolean {
  return token?.startsWith(RESERVATION_PREFIX) ?? false;
}

/**
 * A reservation token we signed, expired or not (its stream, once open, outlives the expiry;
 * opening one checks `expiresAt`), or null. Says nothing of the key: see authenticateKeyId.
 */
export function readStreamReservation(token: string | null | undefined): StreamReservation | null {
  const match = /^sse\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.([1-9]\d{0,11})\.([\w-]{22})\.([\w-]{43})$/.exec(token ?? '');
  if (!match) return null;
  const [, keyId, expires, nonce, signature] = match;
  const expected = Buffer.from(sign(`${RESERVATION_PURPOSE}.${keyId}.${nonce}`, Number(expires)));
  if (!timingSafeEqual(expected, Buffer.from(signature))) return null;
  return { keyId, expiresAt: Number(expires) * 1000, nonce };
}

/** The key from `Authorization: Bearer <key>` (or a bare key). */
export function bearerKey(header: string | null | undefined): string | null {
  if (!header) return null;
  const match = /^\s*Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : header.trim() || null;
}
