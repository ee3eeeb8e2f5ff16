// WORKER_NICE: worker processes (every thread) and the executors they fork run at the
// configured niceness, so on a shared host the API gets the CPU first.
import { readFileSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { photo } from './helpers/images.ts';
import { client, until } from './helpers/client.ts';
import { descendants } from './helpers/faults.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { startService, type Service } from './helpers/service.ts';
import { graphql } from './gql/index.ts';

const CreateTask = graphql(`
  mutation CreateTaskForPriority($input: CreateTaskInput!) {
    createTask(input: $input) { __typename ... on Task { id } }
  }
`);
const TaskStatus = graphql(`
  query TaskStatusForPriority($id: ID!) { task(id: $id) { __typename ... on Task { status } } }
`);

/** Field 19 of /proc/<pid>/task/<tid>/stat is the nice value. */
function niceOf(path: string): number {
  const stat = readFileSync(path, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

/** The running children of `pid` (not grandchildren), with their process titles. */
const children = (pid: number) => descendants(pid).filter(({ ppid }) => ppid === pid);

const threadNices = (pid: number) => readdirSync(`/proc/${pid}/task`).map((tid) => niceOf(`/proc/${pid}/task/${tid}/stat`));

let infra: TestInfra;
let service: Service;

beforeAll(async () => {
  infra = await createInfra('priority');
  service = await startService(infra, { WORKERS: '1', WORKER_NICE: '7' });
});

afterAll(async () => {
  await service?.stop();
  await infra?.dispose();
});

describe.runIf(process.platform === 'linux')('WORKER_NICE', () => {
  it('lowers every worker thread and the executors, not the API', async () => {
    const alice = client(service.url, await infra.createKey('alice'));
    // Run one job so that the worker has forked its executor.
    const created = await alice.upload(
      CreateTask,
      { input: { jobDefinition: 'IMAGE_RESIZE', image: null as unknown as File, resize: { width: 16 }, run: true } },
      { path: 'variables.input.image', bytes: await photo(64, 64) },
    );
    const id = created.data?.createTask.__typename === 'Task' ? created.data.createTask.id : '';
    await until(() => alice.request(TaskStatus, { id }), (r) => r.data?.task.__typename === 'Task' && r.data.task.status === 'DONE');

    const roles = children(service.child.pid!);
    const api = roles.find((p) => p.name === 'tasklane-api')!;
    const worker = roles.find((p) => p.name === 'tasklane-worker')!;
    const executors = children(worker.pid).filter((p) => p.name === 'tasklane-executor');
    expect(executors.length).toBeGreaterThan(0);
    expect(new Set(threadNices(worker.pid))).toEqual(new Set([7]));
    for (const executor of executors) expect(new Set(threadNices(executor.pid))).toEqual(new Set([7]));
    expect(threadNices(api.pid).every((nice) => nice === 0)).toBe(true);
  });
});
