// (d) Fan-out: 1,000 / 5,000 / 10,000 concurrent subscribers on one API process (half SSE,
// half WebSocket; in each, half `taskUpdated(id)` and half `tasksUpdated`) while tasks run.
// Event delivery latency (the task's commit → the client's receipt) p50/p99, API memory
// per subscriber, and final states every subscriber should have seen but did not.
// Target at 10,000: p99 ≤ 50 ms, ≤ 20 KB per subscriber, no dropped final states.
// The subscribers live in a child process (bench/fanout-clients.ts).
import { execSync } from 'node:child_process';
import { GraphQLClient } from './lib/client.ts';
import { photo } from './lib/images.ts';
import { cpuByRole, createInfra, diffRoles, memoryOf, processName, processTree, sleep, startProcess, startService } from './lib/infra.ts';
import type { BenchOptions, BenchResult, Row } from './lib/report.ts';
import { round } from './lib/stats.ts';

function ask<T = any>(child: import('node:child_process').ChildProcess, message: Record<string, unknown>): Promise<T> {
  return new Promise((resolve) => {
    const onMessage = (reply: any) => {
      if (reply.type === `${message.type}-done` || (message.type === 'close' && reply.type === 'closed')) {
        child.off('message', onMessage);
        resolve(reply);
      }
    };
    child.on('message', onMessage);
    child.send(message);
  });
}

export async function fanOut(options: BenchOptions): Promise<BenchResult> {
  const sizes = process.env.BENCH_D_SIZES ? process.env.BENCH_D_SIZES.split(',').map(Number) : options.quick ? [100, 400] : [1000, 5000, 10000];
  const measuredTasks = options.quick ? 2 : 3;
  // Each subscriber is one socket in the API and one in the load generator.
  const fdLimit = Number(execSync('ulimit -n', { shell: '/bin/sh', encoding: 'utf8' }).trim());
  const maxSize = Math.max(...sizes);
  const notes: string[] = [];
  if (fdLimit < maxSize + 1000) notes.push(`ulimit -n is ${fdLimit}: raise it above ${maxSize + 1000} (e.g. ulimit -n 65536) for the largest size`);
  const image = await photo(64, 64, 4);
  const rows: Row[] = [];
  const details: Record<string, unknown> = { fdLimit, measuredTasks };

  for (const size of sizes) {
    if (size + 1000 > fdLimit) continue;
    const infra = await createInfra(`fanout${size}`);
    const service = await startService(infra, {}, options.profile && size === maxSize ? ['--cpu-prof', `--cpu-prof-dir=${options.workDir}/profiles/fanout`] : []);
    const clients = startProcess('bench/fanout-clients.ts', { PATH: process.env.PATH, HOME: process.env.HOME });
    try {
      const key = await infra.createKey('bench');
      const client = new GraphQLClient(service.url, key);
      const ids: string[] = [];
      for (let i = 0; i <= measuredTasks; i++) ids.push(await client.createTask(image, { width: 32 }, false));
      const [canary, ...measured] = ids;
      const apiPid = processTree(service.pid).find((p) => processName(p.pid) === 'tasklane-api')!.pid;
      await sleep(500);
      const before = memoryOf(apiPid);
      const heapBefore = await apiHeap(service.url);
      const plan = Array.from({ length: size }, (_, i) => ({
        transport: i % 2 === 0 ? 'sse' : 'ws',
        kind: i % 4 < 2 ? 'tasksUpdated' : 'taskUpdated',
        taskId: i % 4 < 2 ? null : measured[Math.floor(i / 4) % measured.length],
      }));
      options.log(`fan-out ${size}: opening subscriptions`);
      const openedAt = performance.now();
      const opened = await ask(clients.child, { type: 'open', url: service.url, key, plan });
      const openMs = performance.now() - openedAt;
      // The canary task's DONE reaching every dashboard subscriber says all are live.
      await client.runTask(canary);
      const canaryWait = await ask(clients.child, { type: 'waitFinal', taskId: canary, timeoutMs: 120_000 });
      await sleep(500);
      const after = memoryOf(apiPid);
      const heapAfter = await apiHeap(service.url);
      options.log(`fan-out ${size}: ${opened.opened} open in ${Math.round(openMs)} ms; running ${measured.length} tasks`);
      const cpuBefore = cpuByRole(service.pid);
      const clientCpuBefore = Object.values(cpuByRole(clients.pid)).reduce((a, b) => a + b, 0);
      const t0 = performance.now();
      const waits: number[] = [];
      for (const id of measured) {
        await client.runTask(id);
        waits.push((await ask(clients.child, { type: 'waitFinal', taskId: id, timeoutMs: 120_000 })).missing);
        await sleep(200);
      }
      const cpu = diffRoles(cpuByRole(service.pid), cpuBefore);
      const clientCpuMs = Object.values(cpuByRole(clients.pid)).reduce((a, b) => a + b, 0) - clientCpuBefore;
      const elapsed = performance.now() - t0;
      const result = await ask(clients.child, { type: 'report', measured });
      const perSubscriberKiB = ((after.rssMiB - before.rssMiB) * 1024) / Math.max(1, opened.opened);
      const last = size === maxSize;
      rows.push(
        { metric: `${size} subscribers: latency p50 (SSE / WS)`, tasklane: `${result.sse.p50} / ${result.ws.p50}`, unit: 'ms' },
        {
          metric: `${size} subscribers: latency p99 (SSE / WS)`,
          tasklane: `${result.sse.p99} / ${result.ws.p99}`,
          unit: 'ms',
          ...(last ? { target: '≤ 50 ms', met: result.all.p99 <= 50 } : {}),
        },
        { metric: `${size} subscribers: API memory per subscriber`, tasklane: round(perSubscriberKiB, 1), unit: 'KiB', ...(last ? { target: '≤ 20 KB', met: perSubscriberKiB * 1.024 <= 20 } : {}) },
        { metric: `${size} subscribers: API V8 heap in use per subscriber (uncollected garbage included)`, tasklane: round(((heapAfter.used - heapBefore.used) / 1024) / Math.max(1, opened.opened), 1), unit: 'KiB' },
        {
          metric: `${size} subscribers: final states dropped`,
          tasklane: `${result.droppedFinals} of ${result.expectedFinals}`,
          ...(last ? { target: 'none', met: result.droppedFinals === 0 && opened.errorCount === 0 } : {}),
        },
      );
      details[`size${size}`] = {
        opened,
        openMs,
        canaryMissing: canaryWait.missing,
        apiRssBeforeMiB: before.rssMiB,
        apiRssAfterMiB: after.rssMiB,
        apiHeapBefore: heapBefore,
        apiHeapAfter: heapAfter,
        perSubscriberKiB,
        latency: result,
        apiCpuMs: cpu['tasklane-api'],
        elapsedMs: elapsed,
        deliveries: result.all.n,
        apiCpuMsPerDelivery: cpu['tasklane-api'] / Math.max(1, result.all.n),
        // The load generator shares the machine: its CPU per received event is part of every latency.
        clientCpuMs,
        clientCpuMsPerDelivery: clientCpuMs / Math.max(1, result.all.n),
      };
      if (last && result.all.p99 > 50) {
        notes.push(
          `at ${size} subscribers p99 is ${result.all.p99} ms (target 50): the API spent ${round(cpu['tasklane-api'] / Math.max(1, result.all.n), 3)} ms CPU ` +
            `per delivered event (${result.all.n} deliveries), so one change reaching ${Math.round(size / 2 + size / 2 / measured.length)} subscribers costs ` +
            `${round(((cpu['tasklane-api'] / Math.max(1, result.all.n)) * (size / 2 + size / 2 / measured.length)), 0)} ms of one core; ` +
            `the load generator (same machine) spent ${round(clientCpuMs / Math.max(1, result.all.n), 3)} ms CPU per received event`,
        );
      }
    } finally {
      if (clients.child.connected) await Promise.race([ask(clients.child, { type: 'close' }), sleep(5000)]);
      await clients.stop();
      await service.stop();
      await infra.dispose();
    }
  }
  return { id: 'd', title: 'Fan-out of task events to subscribers (one API process)', rows, details, notes };
}

/** The API process's V8 heap (in use, and reserved), from its own /metrics (prom-client's defaults). */
async function apiHeap(url: string): Promise<{ used: number; total: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
  return { used: value('nodejs_heap_size_used_bytes'), total: value('nodejs_heap_size_total_bytes') };
}
