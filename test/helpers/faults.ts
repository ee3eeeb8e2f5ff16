// Fault injection for reliability tests and `npm run chaos`. Every fault is scoped to ONE
// deployment (its database and REDIS_PREFIX): the PostgreSQL and Redis servers are shared
// with other deployments and test runs, so nothing here touches anything else.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import pg from 'pg';

/** Deletes every Redis key of `prefix` (queue, jobs, stall sets): "Redis lost everything". */
export async function flushPrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) deleted += await redis.del(...keys);
  } while (cursor !== '0');
  return deleted;
}

/** The connections named after `prefix` (all of Tasklane's are), from CLIENT LIST. */
async function prefixClients(redis: Redis, prefix: string): Promise<{ id: string; name: string }[]> {
  const list = (await redis.call('CLIENT', 'LIST')) as string;
  return list
    .split('\n')
    .map((line) => Object.fromEntries(line.split(' ').map((pair) => pair.split('=', 2) as [string, string])))
    .filter((fields) => fields.name?.startsWith(`${prefix}:`))
    .map((fields) => ({ id: fields.id, name: fields.name }));
}

/** The names of the connections named after `prefix`, one per connection. */
export async function redisClientNames(redis: Redis, prefix: string): Promise<string[]> {
  return (await prefixClients(redis, prefix)).map((c) => c.name);
}

/** CLIENT KILLs every connection named after `prefix`; resolves with the names of those killed. */
export async function killRedisClientsNamed(redis: Redis, prefix: string): Promise<string[]> {
  const killed: string[] = [];
  for (const { id, name } of await prefixClients(redis, prefix)) {
    if (Number(await redis.call('CLIENT', 'KILL', 'ID', id)) === 1) killed.push(name);
  }
  return killed;
}

/** CLIENT KILLs every connection named after `prefix` (all of Tasklane's are); resolves with how many. */
export async function killRedisClients(redis: Redis, prefix: string): Promise<number> {
  return (await killRedisClientsNamed(redis, prefix)).length;
}

/** The backends connected to database $1 but ours and those of application_name $2. */
const OTHER_BACKENDS = `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> $2`;

/** Pids of the backends connected to `databaseUrl`'s database but ours (`spare` = application_name). */
export async function backendPids(databaseUrl: string, spare = 'tasklane-test'): Promise<number[]> {
  return withAdmin(databaseUrl, async (admin, database) => {
    const { rows } = await admin.query<{ pid: number }>(OTHER_BACKENDS, [database, spare]);
    return rows.map((row) => row.pid);
  });
}

/** pg_terminate_backend on every connection to `databaseUrl`'s database but ours; resolves with the pids ended. */
export async function terminateBackendPids(databaseUrl: string, spare = 'tasklane-test'): Promise<number[]> {
  return withAdmin(databaseUrl, async (admin, database) => {
    // Materialized, so that no other condition can come after pg_terminate_backend.
    const { rows } = await admin.query<{ pid: number }>(
      `WITH other AS MATERIALIZED (${OTHER_BACKENDS}) SELECT pid FROM other WHERE pg_terminate_backend(pid)`,
      [database, spare],
    );
    return rows.map((row) => row.pid);
  });
}

/** pg_terminate_backend on every connection to `databaseUrl`'s database but ours (`spare` = application_name). */
export async function terminateBackends(databaseUrl: string, spare = 'tasklane-test'): Promise<number> {
  return (await terminateBackendPids(databaseUrl, spare)).length;
}

async function withAdmin<T>(databaseUrl: string, work: (admin: pg.Client, database: string) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    return await work(admin, decodeURIComponent(new URL(databaseUrl).pathname.slice(1)));
  } finally {
    await admin.end();
  }
}

/** Pids of the children of `parentPid` whose process title starts with `title`. */
export function childPids(parentPid: number, title: string): number[] {
  let out = '';
  try {
    out = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(parentPid)]).toString();
  } catch {
    return []; // no children
  }
  return out
    .split('\n')
    .map((line) => line.trim().match(/^(\d+)\s+(.*)$/))
    .filter((m): m is RegExpMatchArray => m !== null && m[2].startsWith(title))
    .map((m) => Number(m[1]));
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The fields of /proc/<pid>/stat after the command name: [0] the state letter, [1] the ppid (null: gone). */
function procStat(pid: number | string): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Whether `pid` runs, from /proc: unlike isAlive, a zombie (state Z) counts as exited. */
export function running(pid: number): boolean {
  const state = procStat(pid)?.[0];
  return state !== undefined && state !== 'Z';
}

export interface Descendant {
  pid: number;
  ppid: number;
  /** argv[0]: the process title of ours. */
  name: string;
}

/** Every running descendant of `root`, from /proc, each before its own descendants. */
export function descendants(root: number): Descendant[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = procStat(entry);
    if (!fields) continue; // gone meanwhile
    const ppid = Number(fields[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const found: Descendant[] = [];
  const visit = (ppid: number) => {
    for (const pid of children.get(ppid) ?? []) {
      if (!running(pid)) continue;
      let name = '?';
      try {
        name = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
      } catch {
        // gone meanwhile
      }
      found.push({ pid, ppid, name });
      visit(pid);
    }
  };
  visit(root);
  return found;
}

/** The pid of the worker that logged "job started" for delivery `attempt` of `taskId`, if it did. */
export function workerOf(output: string, taskId: string, attempt: number): number | null {
  const match = output.match(new RegExp(`"pid":(\\d+)[^\\n]*"taskId":"${taskId}","attempt":${attempt},"msg":"job started"`));
  return match ? Number(match[1]) : null;
}

export interface TaskFacts {
  id: string;
  status: string;
  attempts: number;
  error: string | null;
  resultImageId: string | null;
  /** Terminal (DONE/FAILED) events recorded for the task: exactly one when all is well. */
  terminalEvents: number;
  events: string[];
}

/** What PostgreSQL says about `ids` (missing ids are simply absent from the map). */
export async function taskFacts(sql: (text: string, params?: unknown[]) => Promise<Record<string, unknown>[]>, ids: string[]) {
  const rows = await sql(
    `SELECT t.id, t.status, t.attempts, t.error, t."resultImageId",
            (SELECT count(*)::int FROM "TaskEvent" e WHERE e."taskId" = t.id AND e.status IN ('DONE', 'FAILED')) AS "terminalEvents",
            (SELECT array_agg(e.status::text || coalesce(': ' || e.message, '') ORDER BY e.id) FROM "TaskEvent" e WHERE e."taskId" = t.id) AS events
     FROM "Task" t WHERE t.id = ANY($1::uuid[])`,
    [ids],
  );
  return new Map(rows.map((row) => [row.id as string, row as unknown as TaskFacts]));
}

/** Images that no task references any more (a result written by a losing delivery would be one). */
export async function orphanImages(sql: (text: string) => Promise<Record<string, unknown>[]>): Promise<number> {
  const [row] = await sql(`SELECT count(*)::int AS n FROM "Image" i WHERE NOT EXISTS (
    SELECT 1 FROM "Task" t WHERE t."sourceImageId" = i.id OR t."resultImageId" = i.id)`);
  return row.n as number;
}

type Sql = (text: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

export interface Audit {
  facts: Map<string, TaskFacts>;
  /** Accepted ids the database does not have. */
  lost: string[];
  /** Tasks not DONE or FAILED (yet). */
  stuck: string[];
  /** Tasks with more than one DONE/FAILED event, a DONE without result, a FAILED without reason. */
  duplicates: string[];
  broken: string[];
  orphanImages: number;
}

/** Checks the reliability invariants for `ids` against PostgreSQL. */
export async function audit(sql: Sql, ids: string[]): Promise<Audit> {
  const facts = await taskFacts(sql, ids);
  const result: Audit = { facts, lost: [], stuck: [], duplicates: [], broken: [], orphanImages: await orphanImages(sql) };
  for (const id of ids) {
    const task = facts.get(id);
    if (!task) result.lost.push(id);
    else if (task.status !== 'DONE' && task.status !== 'FAILED') result.stuck.push(id);
    else {
      if (task.terminalEvents > 1) result.duplicates.push(id);
      if (task.status === 'DONE' ? !task.resultImageId : !task.error) result.broken.push(id);
    }
  }
  return result;
}

/** Polls until no task of `ids` is stuck (or `timeoutMs` passes); returns the last audit. */
export async function auditWhenSettled(sql: Sql, ids: string[], timeoutMs: number): Promise<Audit> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await audit(sql, ids);
    if (result.stuck.length === 0 || Date.now() > deadline) return result;
    await new Promise((r) => setTimeout(r, 250));
  }
}
