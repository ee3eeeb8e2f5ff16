// Signed, expiring image URLs: `/images/<id>?exp=<unix seconds>&sig=<HMAC-SHA256>`, usable
// in an <img src> without headers; stream tickets (src/tasks/keys.ts) are signed with the
// same secret. The secret comes from SIGNING_SECRET or, if unset, is
// generated once and kept in the database, so every process and every restart agree.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { config } from './config.ts';
import { prisma } from './db.ts';

const SETTING_KEY = 'imageUrlSigningSecret';
/** Expiries are rounded up to this step, so repeated reads give the same (cacheable) URL. */
const EXPIRY_STEP_SECONDS = 300;

let secret: Buffer | undefined;

export async function loadSigningSecret(): Promise<void> {
  if (config.signingSecret) {
    secret = Buffer.from(config.signingSecret);
    return;
  }
  await prisma.setting.createMany({
    data: [{ key: SETTING_KEY, value: randomBytes(32).toString('base64url') }],
    skipDuplicates: true,
  });
  const row = await prisma.setting.findUniqueOrThrow({ where: { key: SETTING_KEY } });
  secret = Buffer.from(row.value);
}

/**
 * HMAC-SHA256 (base64url) of `<id>.<expires>` with the signing secret. An image's `id` is a
 * UUID; other users of the secret put a prefix that no UUID has (`stream-ticket.<key id>`),
 * so no signature made for one purpose is valid for another.
 */
export function sign(id: string, expires: number): string {
  if (!secret) throw new Error('loadSigningSecret() was not called');
  return createHmac('sha256', secret).update(`${id}.${expires}`).digest('base64url');
}

export function signedImageUrl(id: string, now = Date.now()): string {
  const expires = Math.ceil((now / 1000 + config.imageUrlTtlSeconds) / EXPIRY_STEP_SECONDS) * EXPIRY_STEP_SECONDS;
  return `/images/${id}?exp=${expires}&sig=${sign(id, expires)}`;
}

export type SignatureCheck = 'valid' | 'expired' | 'invalid';

/**
 * Checks the `exp` and `sig` of an image URL's query. Exactly one of each, `exp` in its one
 * canonical form (decimal, no sign, no leading zero): anything else would let one signature
 * stand for several URLs, or a proxy and we read different values from one URL.
 */
export function checkImageSignature(id: string, query: URLSearchParams, now = Date.now()): SignatureCheck {
  const exps = query.getAll('exp');
  const sigs = query.getAll('sig');
  if (exps.length !== 1 || sigs.length !== 1) return 'invalid';
  const [exp] = exps;
  const [sig] = sigs;
  if (!/^(0|[1-9]\d{0,11})$/.test(exp)) return 'invalid';
  const expected = Buffer.from(sign(id, Number(exp)));
  const given = Buffer.from(sig);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return 'invalid';
  return Number(exp) * 1000 < now ? 'expired' : 'valid';
}
