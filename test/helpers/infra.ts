// Real PostgreSQL and Redis for tests: a fresh database and a unique Redis prefix per
// test file, removed afterwards; and a blob store of its own: a temp directory, or with
// TEST_STORAGE=s3 a prefix on the run's S3 server (test/helpers/global-setup.ts).
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createBlobStore, type BlobStore, type StorageConfig } from '../../src/storage/index.ts';

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
  /** STORAGE_URL and, for s3, the S3 variables: the blob store of this infra's processes. */
  storageEnv: Record<string, string>;
  storageKind: 'disk' | 's3';
  /** This infra's blob store, for the test's own process. */
  blobStore: BlobStore;
  /** The keys of every blob in this infra's store, sorted. */
  blobKeys(): Promise<string[]>;
  /** The keys of every blob no live Image row or Upload row points at (should be none once work has settled). */
  orphanBlobs(): Promise<string[]>;
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
  const { storageEnv, storageKind, blobDir, storage } = await testStorage(suffix);
  const store = createBlobStore(storage, { credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  const blobKeys = async () => {
    const keys: string[] = [];
    for await (const blob of store.list()) keys.push(blob.key);
    return keys.sort();
  };

  return {
    databaseUrl,
    redisPrefix,
    redis,
    storageEnv,
    storageKind,
    blobStore: store,
    blobKeys,
    async orphanBlobs() {
      // A tombstone (retention removed its bytes) points at nothing; an upload owns its blob until a task takes it over.
      const rows = (
        await pool.query<{ storageKey: string }>(
          `SELECT "storageKey" FROM "Image" WHERE "expiredAt" IS NULL UNION ALL SELECT "storageKey" FROM "Upload"`,
        )
      ).rows;
      const referenced = new Set(rows.map((row) => row.storageKey));
      return (await blobKeys()).filter((key) => !referenced.has(key));
    },
    async sql(text, params) {
      return (await pool.query(text, params)).rows;
    },
    async createKey(keyName) {
      const key = `tl_${randomBytes(32).toString('base64url')}`;
      const hash = createHash('sha256').update(key).digest('hex');
      // The name's callback secret, as createKey gives it (src/tasks/keys.ts).
      await pool.query(
        `INSERT INTO "ApiKey" ("id", "name", "keyHash", "callbackSecret")
         SELECT gen_random_uuid(), $1, $2, COALESCE((SELECT "callbackSecret" FROM "ApiKey" WHERE "name" = $1 ORDER BY "createdAt", "id" LIMIT 1), $3)`,
        [keyName, hash, `whsec_${randomBytes(32).toString('base64')}`],
      );
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
      if (blobDir) await fs.rm(blobDir, { recursive: true, force: true });
    },
  };
}

/** The run's S3 server when TEST_STORAGE=s3 (started by the global setup), else null. */
async function runS3(): Promise<{ endpoint: string; bucket: string } | null> {
  if (process.env.TEST_STORAGE !== 's3') return null;
  const { inject } = await import('vitest');
  const s3 = inject('testS3');
  if (!s3) throw new Error('TEST_STORAGE=s3 but no S3 server was started (vitest globalSetup)');
  return s3;
}

async function testStorage(suffix: string) {
  const s3 = await runS3();
  if (s3) {
    const prefix = suffix.replace(/_/g, '-');
    const storage: StorageConfig = { kind: 's3', bucket: s3.bucket, prefix: `${prefix}/`, endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true };
    const storageEnv = {
      STORAGE_URL: `s3://${s3.bucket}/${prefix}`,
      S3_ENDPOINT: s3.endpoint,
      AWS_REGION: 'us-east-1',
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    };
    return { storageEnv, storageKind: 's3' as const, blobDir: null, storage };
  }
  const blobDir = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklane-blobs-'));
  const storage: StorageConfig = { kind: 'disk', root: blobDir };
  return { storageEnv: { STORAGE_URL: `file:${blobDir}` }, storageKind: 'disk' as const, blobDir, storage };
}
