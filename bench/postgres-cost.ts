// (h) PostgreSQL's CPU per statement of a task's life, one statement at a time, against what
// any durable write costs on the same server: the floor under the "PostgreSQL CPU per image
// ≤ 1 ms" target of (a) and (c). The child (postgres-cost-child.ts) runs the service's own
// store functions on a fresh database.
import { execFileSync } from 'node:child_process';
import { ROOT } from './lib/infra.ts';
import type { BenchOptions, BenchResult } from './lib/report.ts';
import { round } from './lib/stats.ts';

/** The statements every task that runs to DONE costs: created with run, claimed, completed, a wake-up after its job. */
const PER_TASK = ['insertTask', 'claim', 'complete', 'wakeWaiting'] as const;

export async function postgresCost(options: BenchOptions): Promise<BenchResult> {
  const count = Number(process.env.BENCH_H_COUNT ?? (options.quick ? 200 : 1000));
  options.log(`PostgreSQL: ${count} of each statement, one at a time`);
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'bench/postgres-cost-child.ts', String(count)], { cwd: ROOT, encoding: 'utf8' });
  const { msPerStatement: ms } = JSON.parse(out.trim().split('\n').at(-1)!) as { msPerStatement: Record<string, number> };
  const floor = ms.durableUpdate;
  const perTask = PER_TASK.reduce((sum, name) => sum + ms[name], 0);
  const rows = PER_TASK.map((name) => ({
    metric: `${name}: backend CPU per statement`,
    tasklane: round(ms[name], 3),
    baseline: round(floor, 3),
    ratio: round(ms[name] / floor, 2),
    unit: 'ms (vs a one-row durable UPDATE)',
  }));
  return {
    id: 'h',
    title: 'PostgreSQL CPU per statement of a task (one at a time)',
    rows: [
      ...rows,
      { metric: 'a SELECT 1 round trip', tasklane: round(ms.select1, 3), unit: 'ms backend CPU' },
      {
        metric: 'per task (the four above)',
        tasklane: round(perTask, 2),
        baseline: round(3 * floor, 2),
        ratio: round(perTask / (3 * floor), 2),
        unit: 'ms (vs three durable one-row UPDATEs)',
        target: '≤ 1 ms',
        met: perTask <= 1,
      },
    ],
    details: { count, msPerStatement: ms },
    notes: perTask > 1
      ? [`a task's statements cost PostgreSQL ${round(perTask, 2)} ms of CPU one at a time; three of them must commit durably (created, claimed, done), and one durable one-row UPDATE alone costs ${round(floor, 3)} ms here.`]
      : [],
  };
}
