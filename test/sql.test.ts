// The raw-SQL helpers of the hot path (src/sql.ts) against a real PostgreSQL: statement
// building, prepared statements, and bytes read back through binary COPY.
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, empty, query, readBytes, sql } from '../src/sql.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';

let infra: TestInfra;
let pool: pg.Pool;

beforeAll(async () => {
  infra = await createInfra('sql');
  pool = new pg.Pool({ connectionString: infra.databaseUrl, max: 2 });
  await pool.query(`CREATE TABLE "Blob" ("id" uuid PRIMARY KEY, "data" bytea, "n" int)`);
});

afterAll(async () => {
  await pool?.end();
  await infra?.dispose();
});

describe('sql', () => {
  it('numbers values as parameters and splices fragments, never values', () => {
    const where = sql`"n" > ${1} AND "id" = ANY(${['a', 'b']}::uuid[])`;
    const statement = build(sql`SELECT ${'x'}::text, ${sql`${2}::int, ${sql`${3}::int`}`} FROM "Blob" WHERE ${where} ${empty}`);
    expect(statement.text).toBe('SELECT $1::text, $2::int, $3::int FROM "Blob" WHERE "n" > $4 AND "id" = ANY($5::uuid[]) ');
    expect(statement.values).toEqual(['x', 2, 3, 1, ['a', 'b']]);
  });

  it('runs statements (prepared, so a second run binds only)', async () => {
    for (let n = 1; n <= 2; n++) {
      const rows = await query<{ n: number }>(pool, sql`INSERT INTO "Blob" ("id", "n") VALUES (${randomUUID()}::uuid, ${n}::int) RETURNING "n"`);
      expect(rows).toEqual([{ n }]);
    }
  });
});

describe('readBytes (binary COPY)', () => {
  it('returns the exact bytes, of any size, and null for a missing row or a NULL', async () => {
    for (const size of [0, 1, 255, 70_000, 3 * 1024 * 1024 + 17]) {
      const id = randomUUID();
      const bytes = randomBytes(size);
      await pool.query(`INSERT INTO "Blob" ("id", "data") VALUES ($1, $2)`, [id, bytes]);
      const read = await readBytes(pool, 'Blob', 'data', id);
      expect(read?.length, `size ${size}`).toBe(size);
      expect(read!.equals(bytes), `size ${size}`).toBe(true);
    }
    expect(await readBytes(pool, 'Blob', 'data', randomUUID())).toBeNull();
    const nullId = randomUUID();
    await pool.query(`INSERT INTO "Blob" ("id", "data") VALUES ($1, NULL)`, [nullId]);
    expect(await readBytes(pool, 'Blob', 'data', nullId)).toBeNull();
  });

  it('refuses anything but a UUID (COPY takes no parameters), and reports SQL errors; the pool stays usable', async () => {
    await expect(readBytes(pool, 'Blob', 'data', "x' OR '1'='1")).rejects.toThrow(/not a UUID/);
    await expect(readBytes(pool, 'NoSuchTable', 'data', randomUUID())).rejects.toThrow(/does not exist/);
    const rows = await Promise.all(Array.from({ length: 6 }, () => query<{ one: number }>(pool, sql`SELECT 1 AS one`)));
    expect(rows.flat()).toEqual(Array(6).fill({ one: 1 }));
  });
});
