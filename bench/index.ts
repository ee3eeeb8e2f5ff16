// `npm run bench`: runs the benchmarks (each with its baseline measured in the same run),
// prints a table and writes JSON to bench/results/. Options:
//   --quick         small sizes, to check that everything works (figures mean little)
//   --only=a,c      run only these benchmarks (a: resize throughput, b: API latency under
//                   load, c: pipeline overhead, d: fan-out, e: memory, f: security limits,
//                   g: memory against image size, h: PostgreSQL CPU per statement of a task)
//   --profile       also write --cpu-prof profiles of the processes under test
// Environment: BENCH_A_COUNT, BENCH_C_COUNT, BENCH_D_SIZES, BENCH_H_COUNT (sizes); BENCH_POSTGRES_URL (the
// server the benchmark databases are made on, e.g. over a Unix socket); BENCH_NODE_ARGS
// (node flags for every process of the service under test, e.g. V8 heap settings).
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, stopAll } from './lib/infra.ts';
import type { BenchOptions, BenchResult } from './lib/report.ts';
import { apiLatency } from './api-latency.ts';
import { fanOut } from './fanout.ts';
import { memory } from './memory.ts';
import { pipelineOverhead } from './pipeline-overhead.ts';
import { postgresCost } from './postgres-cost.ts';
import { resizeThroughput } from './resize-throughput.ts';
import { security } from './security.ts';
import { uploadMemory } from './upload-memory.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick') || process.env.BENCH_QUICK === '1';
const only = args.find((arg) => arg.startsWith('--only='))?.slice('--only='.length).split(',');
const profile = args.includes('--profile');

const BENCHMARKS: Record<string, (options: BenchOptions) => Promise<BenchResult>> = {
  a: resizeThroughput,
  b: apiLatency,
  c: pipelineOverhead,
  d: fanOut,
  e: memory,
  f: security,
  g: uploadMemory,
  h: postgresCost,
};

function machine() {
  const cpuModel = os.cpus()[0]?.model ?? 'unknown';
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { cwd: ROOT, encoding: 'utf8' }).trim();
    if (execSync('git status --porcelain -- src worker bench', { cwd: ROOT, encoding: 'utf8' }).trim()) commit += '+dirty';
  } catch {}
  return { cores: os.availableParallelism(), cpuModel, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, loadavg: os.loadavg(), commit };
}

function printTable(results: BenchResult[]) {
  const header = ['', 'figure', 'Tasklane', 'baseline', 'ratio', 'unit', 'target', 'met'];
  const lines = [header];
  for (const result of results) {
    lines.push([result.id, `— ${result.title}`, '', '', '', '', '', '']);
    for (const row of result.rows) {
      lines.push([
        '',
        row.metric,
        String(row.tasklane),
        row.baseline === undefined ? '' : String(row.baseline),
        row.ratio === undefined ? '' : `${row.ratio}×`,
        row.unit ?? '',
        row.target ?? '',
        row.met === undefined ? '' : row.met ? 'yes' : 'NO',
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...lines.map((line) => line[i].length)));
  for (const line of lines) console.log(line.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd());
  for (const result of results) for (const note of result.notes) console.log(`\n(${result.id}) ${note}`);
}

/** The same table in Markdown, for bench/RESULTS.md. */
function markdown(results: BenchResult[], info: ReturnType<typeof machine>, totalSeconds: number) {
  const lines = [
    `Machine: ${info.cores} cores, ${info.cpuModel}, ${info.memGiB} GiB RAM, Node ${info.node}; commit ${info.commit}; ` +
      `${new Date().toISOString()}; load average at start ${info.loadavg.map((l) => l.toFixed(2)).join(' ')}; whole run ${totalSeconds.toFixed(0)} s.`,
    '',
    '| | figure | Tasklane | baseline | ratio | unit | target | met |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const result of results) {
    lines.push(`| **${result.id}** | **${result.title}** | | | | | | |`);
    for (const row of result.rows) {
      const met = row.met === undefined ? '' : row.met ? 'yes' : '**no**';
      lines.push(`| | ${row.metric} | ${row.tasklane} | ${row.baseline ?? ''} | ${row.ratio === undefined ? '' : `${row.ratio}×`} | ${row.unit ?? ''} | ${row.target ?? ''} | ${met} |`);
    }
  }
  for (const result of results) for (const note of result.notes) lines.push('', `(${result.id}) ${note}`);
  return lines.join('\n') + '\n';
}

async function main() {
  const started = Date.now();
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = path.join(ROOT, 'bench/results');
  const workDir = path.join(resultsDir, `run-${stamp}`);
  mkdirSync(workDir, { recursive: true });
  const info = machine();
  console.log(`Tasklane benchmarks${quick ? ' (--quick: small sizes, figures are not meaningful)' : ''}`);
  console.log(`${info.cores} cores, ${info.cpuModel}, ${info.memGiB} GiB, Node ${info.node}, commit ${info.commit}, load ${info.loadavg.map((l) => l.toFixed(2)).join(' ')}`);
  if (info.loadavg[0] > 0.7) console.log('warning: the machine is busy (load average above 0.7); figures will be distorted');
  const options: BenchOptions = {
    quick,
    cores: info.cores,
    workDir,
    profile,
    log: (message) => console.error(`  [${((Date.now() - started) / 1000).toFixed(0)} s] ${message}`),
  };
  const results: BenchResult[] = [];
  const failures: string[] = [];
  const save = (complete: boolean) => {
    const totalSeconds = (Date.now() - started) / 1000;
    const report = { date: new Date().toISOString(), quick, complete, machine: info, totalSeconds, results, failures };
    writeFileSync(path.join(workDir, 'results.json'), JSON.stringify(report, null, 2));
    writeFileSync(path.join(workDir, 'results.md'), markdown(results, info, totalSeconds));
    if (complete) writeFileSync(path.join(resultsDir, quick ? 'latest-quick.json' : 'latest.json'), JSON.stringify(report, null, 2));
    return totalSeconds;
  };
  for (const [id, bench] of Object.entries(BENCHMARKS)) {
    if (only && !only.includes(id)) continue;
    options.log(`benchmark ${id}`);
    try {
      results.push(await bench(options));
    } catch (error) {
      failures.push(`${id}: ${(error as Error).stack}`);
      await stopAll();
    }
    // Written after every benchmark, so that a run cut short keeps what it measured.
    save(false);
  }
  console.log('');
  printTable(results);
  const totalSeconds = save(true);
  console.log(`\n${results.length} benchmark(s) in ${totalSeconds.toFixed(0)} s; JSON: ${path.relative(ROOT, workDir)}/results.json`);
  for (const failure of failures) console.error(`FAILED ${failure}`);
  process.exit(failures.length ? 1 : 0);
}

process.on('SIGINT', () => void stopAll().then(() => process.exit(130)));
main().catch(async (error) => {
  console.error(error);
  await stopAll();
  process.exit(1);
});
