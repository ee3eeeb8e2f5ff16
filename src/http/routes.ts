// Plain HTTP endpoints beside /graphql, as fetch handlers (Request → Response) so that
// tests can call them through yoga.fetch as well as over the network.
import { config } from '../config.ts';
import { prisma } from '../db.ts';
import { checkImageSignature } from '../image-urls.ts';
import { authenticate, bearerKey } from '../tasks/keys.ts';
import { queueCounts } from '../tasks/queue.ts';
import { getImageData } from '../tasks/service.ts';
import { withTimeout } from '../timeout.ts';
import { isUuid } from '../uuid.ts';

const CONTENT_TYPES: Record<string, string> = {
  JPEG: 'image/jpeg',
  PNG: 'image/png',
  WEBP: 'image/webp',
  AVIF: 'image/avif',
  GIF: 'image/gif',
  TIFF: 'image/tiff',
};

const text = (status: number, body: string, headers: Record<string, string> = {}) =>
  new Response(body, { status, headers: { 'content-type': 'text/plain; charset=utf-8', ...headers } });

export function health(): Response {
  return text(200, 'ok\n');
}

/**
 * Set while the process starts (waiting for PostgreSQL, applying migrations): /ready says
 * 503 with this reason, and every route but /health and /ready answers 503 (server.ts).
 */
export const startup: { pending: string | null } = { pending: null };

/**
 * 200 when this process can do its work: start-up is over, PostgreSQL answers, and it can
 * put jobs on the queue (a command through the very queue client that enqueues, which is
 * replaced when it could not connect; a Redis that answers PING is not enough). Else 503
 * naming the culprit.
 */
export async function ready(): Promise<Response> {
  const [database, queue] = await Promise.allSettled([
    withTimeout(prisma.$queryRaw`SELECT 1`, 1000, 'no answer from PostgreSQL'),
    queueCounts(1000),
  ]);
  const report = {
    postgres: database.status === 'fulfilled' ? 'ok' : String(database.reason?.message ?? database.reason),
    redis: queue.status === 'fulfilled' ? 'ok' : String(queue.reason?.message ?? queue.reason),
  };
  const ok = report.postgres === 'ok' && report.redis === 'ok' && !startup.pending;
  return new Response(JSON.stringify({ ready: ok, ...report, ...(startup.pending ? { starting: startup.pending } : {}) }), {
    status: ok ? 200 : 503,
    headers: { 'content-type': 'application/json' },
  });
}

/**
 * GET /images/<id>: with a valid signature (exp, sig) for anyone, which is what makes
 * <img src> work; without a signature for the owner's API key only. A tampered or expired
 * signature is 403; a deleted, missing or foreign image is 404.
 */
export async function image(request: Request, url: URL): Promise<Response> {
  if (request.method !== 'GET' && request.method !== 'HEAD') return text(405, 'method not allowed\n', { allow: 'GET, HEAD' });
  const id = url.pathname.slice('/images/'.length);
  if (!isUuid(id)) return text(404, 'no such image\n');
  let owner: string | null = null;
  if (url.searchParams.has('sig') || url.searchParams.has('exp')) {
    const check = checkImageSignature(id, url.searchParams);
    if (check !== 'valid') return text(403, `${check} signature\n`);
  } else {
    const caller = await authenticate(bearerKey(request.headers.get('authorization')));
    if (!caller) return text(401, 'a signed URL or the owner\'s API key is required\n', { 'www-authenticate': 'Bearer' });
    owner = caller.owner;
  }
  const row = await getImageData(id);
  if (!row || (owner !== null && row.ownerId !== owner)) return text(404, 'no such image\n');
  return new Response(request.method === 'HEAD' ? null : (row.data as Uint8Array<ArrayBuffer>), {
    status: 200,
    headers: {
      'content-type': CONTENT_TYPES[row.format] ?? 'application/octet-stream',
      'content-length': String(row.byteSize),
      'cache-control': `private, max-age=${Math.min(config.imageUrlTtlSeconds, 3600)}`,
      'x-content-type-options': 'nosniff',
      'content-security-policy': "default-src 'none'",
    },
  });
}
