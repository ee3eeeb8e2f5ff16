// The one connection pool of a process, and the Prisma client on it (Rust-free client +
// node-postgres adapter). The hot-path statements use the pool directly (src/sql.ts).
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { config } from './config.ts';
import { log } from './log.ts';
import { PrismaClient } from './generated/prisma/client.ts';

export const pool = new pg.Pool({
  connectionString: config.databaseUrl,
  max: 10,
  // Fail fast instead of hanging when PostgreSQL is unreachable.
  connectionTimeoutMillis: 5000,
  // A statement that waits this long on a dead connection is abandoned.
  query_timeout: 30_000,
});
// An idle connection dropped by the server (restart, pg_terminate_backend) is an 'error'
// event on the pool: without a listener it would end the process. The pool replaces the
// connection; the next query meets the outage, if there is one, and reports it.
pool.on('error', (error) => log.warn({ err: error.message }, 'idle PostgreSQL connection lost; the pool replaces it'));
// A connection lost while checked out (a transaction between two statements: the
// reconciler's, a sweep's) is an 'error' event on its client, which the pool does not listen
// to then: unheard, it would end the process. The next statement on it fails instead, and
// the transaction with it.
pool.on('connect', (client) =>
  client.on('error', (error) => log.warn({ err: error.message }, 'PostgreSQL connection lost while in use')),
);

export const prisma = new PrismaClient({
  adapter: new PrismaPg(pool, { disposeExternalPool: true }),
});

// What a lost, refused or timed-out connection looks like, at any depth of Prisma's
// wrapping (Prisma codes, the pg adapter's kinds, PostgreSQL's SQLSTATEs, node's errnos).
const UNAVAILABLE_CODES = new Set([
  'P1001', 'P1002', 'P1008', 'P1017', 'P2024', // can't reach, timed out, closed, pool timeout
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH',
  '57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006', '53300', // shutdown, connection exceptions, too many
]);
const UNAVAILABLE_KINDS = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections']);
const UNAVAILABLE_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Can't reach database|Server has closed the connection|Connection ended|terminating connection|ECONNREFUSED|ECONNRESET/i;

/** True when `error` says PostgreSQL could not be reached or dropped the connection. */
export function isDatabaseUnavailable(error: unknown, depth = 0): boolean {
  if (!error || typeof error !== 'object' || depth > 6) return false;
  const e = error as Record<string, unknown>;
  if (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code)) return true;
  if (typeof e.originalCode === 'string' && UNAVAILABLE_CODES.has(e.originalCode)) return true;
  if (typeof e.kind === 'string' && UNAVAILABLE_KINDS.has(e.kind)) return true;
  if (typeof e.message === 'string' && UNAVAILABLE_MESSAGE.test(e.message)) return true;
  return ['cause', 'meta', 'driverAdapterError', 'originalError'].some((key) => isDatabaseUnavailable(e[key], depth + 1));
}

/** Longest pause between two tries of whenDatabaseAvailable: how late a process can notice PostgreSQL is back. */
const MAX_UNAVAILABLE_RETRY_MS = 2000;

/**
 * Runs `work` until it succeeds, waiting out PostgreSQL being unreachable (a process started
 * while it is down, restarted, or cut off): tried again after 250 ms, doubling up to 2 s, for
 * as long as it takes. Any other error is thrown at once. Start-up steps go through this, so
 * a process waits for the database instead of dying and being restarted in a loop.
 */
export async function whenDatabaseAvailable<T>(what: string, work: () => Promise<T>): Promise<T> {
  const since = Date.now();
  for (let attempt = 1, delay = 250; ; attempt++) {
    try {
      const result = await work();
      if (attempt > 1) log.info({ waitedMs: Date.now() - since }, `${what}: PostgreSQL is back`);
      return result;
    } catch (error) {
      if (!isDatabaseUnavailable(error)) throw error;
      // The first failure, then one line about every 20 s: an outage is not a log flood.
      if (attempt % 10 === 1) log.warn({ err: (error as Error).message, attempt }, `${what}: PostgreSQL is unavailable; waiting for it`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, MAX_UNAVAILABLE_RETRY_MS);
    }
  }
}
