// Applies prisma/migrations the way `prisma migrate deploy` does, without the migrate
// engine (which cannot be downloaded here): creates the database if missing, takes a
// session advisory lock so only one process migrates at a time, applies each pending
// migration.sql in a transaction and records it in _prisma_migrations with Prisma's
// checksum (sha-256 hex of the file), so Prisma's own CLI agrees with what we did.
//
// Some schema changes need code between two migrations (moving data out of PostgreSQL):
// DATA_STEPS names such a step by the migration it follows. It runs after that migration
// is applied and before the next one is, outside any migration's transaction, under the
// same lock; it must be idempotent, since an interrupted run repeats it at the next start.
import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { moveImageBytesToStore } from './migrate-images.ts';
import type { BlobStore } from './storage/index.ts';

const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../prisma/migrations');
// Arbitrary constant shared by every Tasklane process: "the migration lock".
const MIGRATION_LOCK_KEY = 72_616_001;
/** An unreachable server is an error (which callers may wait out), not a connect() hanging forever. */
const CONNECT_TIMEOUT_MS = 5000;
function client(connectionString: string): pg.Client {
  const c = new pg.Client({ connectionString, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  // A connection cut between two statements is an 'error' event, which unheard would end the
  // process; the next statement fails with it instead.
  c.on('error', () => {});
  return c;
}

export interface MigrateOptions {
  /**
   * The blob store, for data steps that write to it. Needed only when such a step finds
   * work to do (an empty database never does); its absence then fails the migration.
   */
  store?: BlobStore;
  /** Progress of data steps. */
  log?: (message: string, details?: Record<string, unknown>) => void;
}

export interface DataStepContext {
  client: pg.Client;
  store: () => BlobStore;
  log: (message: string, details?: Record<string, unknown>) => void;
}

/** Code that runs after the named migration and before the next one (see the top of this file). */
const DATA_STEPS: Record<string, (context: DataStepContext) => Promise<void>> = {
  '20261130150000_image_storage_key': moveImageBytesToStore,
};

export async function ensureDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.slice(1));
  if (!name) throw new Error('DATABASE_URL names no database');
  const probe = client(databaseUrl);
  try {
    await probe.connect();
    return;
  } catch (error) {
    if ((error as { code?: string }).code !== '3D000') throw error; // 3D000: database does not exist
  } finally {
    await probe.end().catch(() => {});
  }
  url.pathname = '/postgres';
  const admin = client(url.toString());
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
  } catch (error) {
    if ((error as { code?: string }).code !== '42P04') throw error; // created meanwhile by another process
  } finally {
    await admin.end();
  }
}

export async function migrate(databaseUrl: string, options: MigrateOptions = {}): Promise<string[]> {
  await ensureDatabase(databaseUrl);
  const db = client(databaseUrl);
  await db.connect();
  const applied: string[] = [];
  try {
    await db.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await db.query(`CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
      "id" VARCHAR(36) PRIMARY KEY NOT NULL,
      "checksum" VARCHAR(64) NOT NULL,
      "finished_at" TIMESTAMPTZ,
      "migration_name" VARCHAR(255) NOT NULL,
      "logs" TEXT,
      "rolled_back_at" TIMESTAMPTZ,
      "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
      "applied_steps_count" INTEGER NOT NULL DEFAULT 0
    )`);
    const done = await db.query<{ migration_name: string; checksum: string }>(
      `SELECT migration_name, checksum FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`,
    );
    const doneByName = new Map(done.rows.map((row) => [row.migration_name, row.checksum]));
    const names = (await readdir(MIGRATIONS_DIR, { withFileTypes: true }))
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name)
      .sort();
    const context: DataStepContext = {
      client: db,
      store: () => {
        if (!options.store) throw new Error('this migration moves data into the blob store: pass migrate() a store');
        return options.store;
      },
      log: options.log ?? (() => {}),
    };
    for (const [index, name] of names.entries()) {
      const sql = await readFile(path.join(MIGRATIONS_DIR, name, 'migration.sql'), 'utf8');
      const checksum = createHash('sha256').update(sql).digest('hex');
      const previous = doneByName.get(name);
      if (previous !== undefined) {
        if (previous !== checksum) {
          throw new Error(`migration ${name} was modified after it was applied (checksum differs)`);
        }
        await runDataStep(name, names[index + 1], doneByName, context);
        continue;
      }
      const id = randomUUID();
      await db.query('BEGIN');
      try {
        await db.query(sql);
        await db.query(
          `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
           VALUES ($1, $2, $3, now(), now(), 1)`,
          [id, checksum, name],
        );
        await db.query('COMMIT');
      } catch (error) {
        await db.query('ROLLBACK');
        throw new Error(`migration ${name} failed: ${(error as Error).message}`);
      }
      applied.push(name);
      await runDataStep(name, names[index + 1], doneByName, context);
    }
  } finally {
    await db.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
    await db.end();
  }
  return applied;
}

/** The data step after `name`, unless the migration after it is applied already (then it ran). */
async function runDataStep(name: string, next: string | undefined, done: Map<string, string>, context: DataStepContext) {
  const step = DATA_STEPS[name];
  if (!step || (next !== undefined && done.has(next))) return;
  try {
    await step(context);
  } catch (error) {
    throw new Error(`data step after migration ${name} failed: ${(error as Error).message}`, { cause: error });
  }
}
