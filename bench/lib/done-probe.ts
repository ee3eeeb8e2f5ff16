// Waiting for a benchmark's tasks to end without counting the wait as Tasklane's work. The
// probe polls PostgreSQL (not the API: it must not load what it measures) over one
// connection of its own, and reads that connection's backend CPU from /proc, so that a
// benchmark subtracts it from the PostgreSQL CPU it reports (what it cost: bench/RESULTS.md).
import pg from 'pg';
import { cpuMsOf, sleep } from './infra.ts';

export interface DoneProbe {
  /** Resolves once `count` tasks are DONE or FAILED. */
  waitDone(count: number, timeoutMs?: number): Promise<void>;
  /** CPU ms the probe's own PostgreSQL backend has used so far. */
  backendCpuMs(): number;
  close(): Promise<void>;
}

export async function doneProbe(databaseUrl: string): Promise<DoneProbe> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'tasklane-bench-probe' });
  await client.connect();
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const backend = rows[0].pid;
  return {
    async waitDone(count, timeoutMs = 300_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { rows: [{ finished }] } = await client.query<{ finished: number }>(
          `SELECT count(*)::int AS finished FROM "Task" WHERE "status" IN ('DONE', 'FAILED')`,
        );
        if (finished >= count) return;
        if (Date.now() > deadline) throw new Error(`only ${finished} of ${count} tasks finished in ${timeoutMs} ms`);
        await sleep(25);
      }
    },
    backendCpuMs: () => cpuMsOf(backend),
    close: () => client.end(),
  };
}
