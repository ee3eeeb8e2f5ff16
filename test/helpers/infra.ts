// Real PostgreSQL and Redis for tests: a fresh database and a unique Redis prefix per
// test file, removed afterwards.
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';

const SERVER_URL = process.env.TEST_POSTGRES_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
/** application_name of the tests' own PostgreSQL connections. */
export const TEST_APPLICATION_NAME = 'tasklane-test';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface TestInfra {
  databaseUrl: string;
  redisPrefix: string;
  /** Runs SQL against the test database. */
  sql<T extends pg.QueryResultRow = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  redis: Redis;
  /** Creates an API key for `name` directly in the database (as `npm run key` does). */
  createKey(name: string): Promise<string>;
  dispose(): Promise<void>;
}

/**
 * A fresh database (created on `serverUrl`) and Redis prefix, both removed by dispose().
 * `kind` names them (`tasklane_<kind>_…`, `tl<kind>_…`): the benchmarks use this too.
 */
export async function createInfra(label: string, { kind = 'test', serverUrl = SERVER_URL } = {}): Promise<TestInfra> {
  const suffix = `${label.replace(/\W/g, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const name = `tasklane_${kind}_${suffix}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  // Named, so fault injection (pg_terminate_backend) can spare the test's own connections.
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4, application_name: TEST_APPLICATION_NAME });
  pool.on('error', () => {}); // an idle connection cut by a test: the pool replaces it
  const redisPrefix = `tl${kind}_${suffix}`;
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });

  return {
    databaseUrl,
    redisPrefix,
    redis,
    async sql(text, params) {
      return (await pool.query(text, params)).rows;
    },
    async createKey(keyName) {
      const key = `tl_${randomBytes(32).toString('base64url')}`;
      const hash = createHash('sha256').update(key).digest('hex');
      await pool.query(`INSERT INTO "ApiKey" ("id", "name", "keyHash") VALUES (gen_random_uuid(), $1, $2)`, [keyName, hash]);
      return key;
    },
    async dispose() {
      await pool.end();
      // Remove every key of this run's prefix.
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${redisPrefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await redis.del(...keys);
      } while (cursor !== '0');
      redis.disconnect();
      const cleanup = new pg.Client({ connectionString: serverUrl });
      await cleanup.connect();
      await cleanup.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await cleanup.end();
    },
  };
}
