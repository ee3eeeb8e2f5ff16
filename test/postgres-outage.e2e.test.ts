// PostgreSQL unreachable for a while, through a TCP proxy in front of it that this test owns
// (the machine's PostgreSQL is never touched): at start-up (the service starts while it is
// down) and in the middle of a burst (tasks queued and running). Meanwhile the processes
// stay up and /ready says 503; afterwards /ready says 200 and every task ends DONE, once.
//
// The cut lasts PG_CUT_MS (6 s by default; `PG_CUT_MS=30000` for the 30 s of the issue): the
// mechanism is the same at any length: refused connections and cut sessions, waited out
// with capped backoff (src/db.ts whenDatabaseAvailable, the pools, the reconciler). 6 s is
// longer than the lease (2 s here) and than the pool's connect timeout, so leases expire
// and every kind of retry runs during the cut.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { client, until, type Client } from './helpers/client.ts';
import { taskFacts } from './helpers/faults.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { freePort, tcpProxy, type TcpProxy } from './helpers/outage.ts';
import { SCRIPTS, startProcess, testEnv, type RunningProcess } from './helpers/service.ts';
import { expectAllDoneOnce as expectAllDoneOnceIn } from './helpers/settled.ts';
import { submit } from './helpers/tasks.ts';

vi.setConfig({ testTimeout: 240_000, hookTimeout: 120_000 });

const CUT_MS = Number(process.env.PG_CUT_MS ?? 6000);
/** About a second of AVIF encoding per task: long enough to be caught running. */
const MEDIUM = { width: 512, format: 'AVIF' };
/** A few ms of work: for tasks that only have to wait in the queue, or to show that work flows. */
const QUICK = { width: 64 };

let infra: TestInfra;
let pgProxy: TcpProxy;
let image: Buffer;
let small: Buffer;
let service: RunningProcess | undefined;
let url: string;
let alice: Client;

beforeAll(async () => {
  [infra, image, small] = await Promise.all([createInfra('pgcut'), photo(1024, 1024), photo(200, 150)]);
  pgProxy = await tcpProxy(Number(new URL(infra.databaseUrl).port || 5432));
});

afterAll(async () => {
  await service?.stop();
  await pgProxy?.close();
  await infra?.dispose();
});

/** `npm start`'s supervisor on a known port (so /ready can be asked before it says where it listens), PostgreSQL through the proxy. */
async function start(): Promise<RunningProcess> {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const viaProxy = new URL(infra.databaseUrl);
  viaProxy.port = String(pgProxy.port);
  return (service = startProcess(
    SCRIPTS.start,
    testEnv(infra, { DATABASE_URL: viaProxy.toString(), PORT: String(port), WORKERS: '2', LEASE_MS: '2000', RECONCILE_INTERVAL_MS: '250' }),
  ));
}

async function readiness(): Promise<{ status: number; body: Record<string, unknown> } | null> {
  try {
    const response = await fetch(`${url}/ready`);
    return { status: response.status, body: await response.json() };
  } catch {
    return null; // not listening (yet)
  }
}

/** Nothing died or gave up: no process exited (to be restarted), nothing fatal. */
function expectNoDeaths(output: string) {
  expect(output).not.toMatch(/exited; restarting|failed to start|"level":60/);
}

const expectAllDoneOnce = (ids: string[]) => expectAllDoneOnceIn(infra.sql, ids);

describe('PostgreSQL unreachable', () => {
  it('during start-up: the service waits for it (/ready 503 meanwhile), then works', async () => {
    await pgProxy.down();
    const cutAt = Date.now();
    const service = await start();
    // The API listens although PostgreSQL is down, and says so.
    const down = await until(readiness, (r) => r?.status === 503, 60_000, 100);
    expect(down!.body.ready).toBe(false);
    expect(down!.body.postgres).not.toBe('ok');
    expect((await fetch(`${url}/health`)).status).toBe(200);
    const refused = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{__typename}"}' });
    expect(refused.status).toBe(503);
    expect((await refused.json()).errors[0].extensions.code).toBe('SERVICE_UNAVAILABLE');
    await service.waitFor(/PostgreSQL is unavailable; waiting for it/);

    await new Promise((r) => setTimeout(r, Math.max(0, CUT_MS - (Date.now() - cutAt))));
    expect((await readiness())?.status).toBe(503);
    expectNoDeaths(service.output());

    await pgProxy.up();
    const upAt = Date.now();
    await until(readiness, (r) => r?.status === 200, 60_000, 100);
    const readyAfter = Date.now() - upAt;
    await until(async () => service.output().match(/worker ready/g)?.length ?? 0, (n) => n >= 2, 60_000);
    console.log(`start-up cut of ${CUT_MS} ms: /ready 200 ${readyAfter} ms after PostgreSQL came back, workers ready after ${Date.now() - upAt} ms`);
    expect(service.output()).toMatch(/api listening/);

    alice = client(url, await infra.createKey('alice-1'));
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await submit(alice, small, QUICK));
    await expectAllDoneOnce(ids);
    expectNoDeaths(service.output());
  });

  it('in the middle of a burst: tasks queued and running all end DONE once, /ready 503 then 200', async () => {
    // The service of the previous test, or (run alone) a fresh one.
    if (!service || service.child.exitCode !== null) {
      await service?.stop();
      await start();
      await service!.waitFor(/api listening/, 120_000);
      await until(async () => service!.output().match(/worker ready/g)?.length ?? 0, (n) => n >= 2, 60_000);
      alice = client(url, await infra.createKey('alice-2'));
    }
    // One slow task per worker, to be caught running; the others wait in the queue behind
    // them, so what they take to run does not matter.
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) ids.push(await submit(alice, image, MEDIUM));
    for (let i = 0; i < 6; i++) ids.push(await submit(alice, small, QUICK));
    await until(
      async () => [...(await taskFacts(infra.sql, ids)).values()].map((t) => t.status),
      (s) => s.includes('RUNNING') && s.includes('QUEUED'),
      120_000,
      50,
    );
    await pgProxy.down();
    const cutAt = Date.now();
    const down = await until(readiness, (r) => r?.status === 503, 30_000, 100);
    expect(down!.body.postgres).not.toBe('ok');
    await new Promise((r) => setTimeout(r, Math.max(0, CUT_MS - (Date.now() - cutAt))));
    expect((await readiness())?.status).toBe(503);

    await pgProxy.up();
    const upAt = Date.now();
    await until(readiness, (r) => r?.status === 200, 60_000, 100);
    const readyAfter = Date.now() - upAt;
    // A task submitted right after, too.
    ids.push(await submit(alice, small, QUICK));
    await expectAllDoneOnce(ids);
    console.log(`mid-burst cut of ${CUT_MS} ms: /ready 200 ${readyAfter} ms after PostgreSQL came back, all ${ids.length} tasks DONE ${Date.now() - upAt} ms after`);
    expectNoDeaths(service!.output());
  });
});
