// Child of benchmark (h): PostgreSQL's CPU for each statement of a task's life, one at a
// time (no concurrency, and no backlog: each task has its own owner), measured as the CPU of
// this database's backends from /proc. Baselines in the same database: a SELECT 1 round
// trip, and a one-row UPDATE that commits durably (the cheapest statement that has to flush
// the WAL). Runs the service's own store functions in this process (the configuration is
// read on first import, hence a child), on the tests' PostgreSQL server (127.0.0.1:5432;
// BENCH_POSTGRES_URL does not apply here). Prints one JSON line: { count, msPerStatement }.
import { randomUUID } from 'node:crypto';
import { inProcess } from '../test/helpers/in-process.ts';
import { TEST_APPLICATION_NAME } from '../test/helpers/infra.ts';
import { cpuMsOf } from './lib/infra.ts';

const count = Number(process.argv[2] ?? 1000);
const { infra, dispose } = await inProcess('pgcost', { MAX_ACTIVE_TASKS_PER_KEY: '100000000' });
const store = await import('../src/tasks/store.ts');
const { pool } = await import('../src/db.ts');
const database = new URL(infra.databaseUrl).pathname.slice(1);

/** CPU ms of this database's backends serving the service's pool (not the helper's own connections). */
async function backendCpuMs(): Promise<number> {
  const rows = await infra.sql<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name <> $2`,
    [database, TEST_APPLICATION_NAME],
  );
  return rows.reduce((sum, { pid }) => sum + cpuMsOf(pid), 0);
}

const image = () => ({ id: randomUUID(), format: 'JPEG' as const, width: 64, height: 64, byteSize: 1000, storageKey: `bench/${randomUUID()}`, sha256: '0'.repeat(64) });
const msPerStatement: Record<string, number> = {};
async function measure(name: string, statement: (i: number) => Promise<unknown>) {
  const before = await backendCpuMs();
  for (let i = 0; i < count; i++) await statement(i);
  msPerStatement[name] = ((await backendCpuMs()) - before) / count;
}

// One connection in the pool from here on is enough (one statement at a time); open it first.
await pool.query('SELECT 1');
await pool.query('CREATE TABLE "BenchFloor" ("id" int PRIMARY KEY, "n" int NOT NULL); INSERT INTO "BenchFloor" VALUES (1, 0)');

const ids: string[] = [];
const attempts: number[] = [];
await measure('select1', () => pool.query('SELECT 1'));
await measure('durableUpdate', () => pool.query('UPDATE "BenchFloor" SET "n" = "n" + 1 WHERE "id" = 1'));
// Each task its own owner: the phases run one after another (every claim before the first
// complete), and one owner would count all of them as its running and active tasks.
await measure('insertTask', async (i) => {
  const task = await store.insertTask({ ownerId: `bench-${i}`, jobDefinition: 'IMAGE_RESIZE', params: { width: 32 } as never, source: image(), run: true, limit: 100_000_000 });
  ids.push(task!.id);
});
await measure('claim', async (i) => {
  const claimed = await store.claim(ids[i], 60_000, 100_000_000);
  if (!claimed || claimed === 'waiting') throw new Error('claim failed');
  attempts.push(claimed.task.attempts);
});
await measure('complete', (i) => store.complete(ids[i], attempts[i], image()));
await measure('wakeWaiting', (i) => store.wakeWaiting(`bench-${i}`, 3));

await dispose();
console.log(JSON.stringify({ count, msPerStatement }));
process.exit(0);
