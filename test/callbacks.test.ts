// Callbacks at the mechanism, in-process against real PostgreSQL and Redis, with the default
// policy (WEBHOOK_ALLOW_PRIVATE_NETWORKS=false): which addresses are refused, at create time
// (GraphQL and REST) and again at delivery time (a name that resolves elsewhere by then);
// the outbox's lease (an attempt whose process died), giving up after CALLBACK_RETRY_FOR_MS,
// many claimers at once (FOR UPDATE SKIP LOCKED), and the migration's secrets for existing
// keys. End to end with real processes: test/callbacks.e2e.test.ts.
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { photo } from './helpers/images.ts';
import type { TestInfra } from './helpers/infra.ts';
import { inProcess } from './helpers/in-process.ts';
import { ROOT } from './helpers/service.ts';
import { startReceiver, verified, type Receiver } from './helpers/webhook-receiver.ts';

let infra: TestInfra;
let receiver: Receiver;
let key: string;
let secret: string;
let yoga: typeof import('../src/http/yoga.ts').yoga;
let policy: typeof import('../src/callbacks/address-policy.ts');
let delivery: typeof import('../src/callbacks/delivery.ts');
let outbox: typeof import('../src/callbacks/store.ts');
let metrics: typeof import('../src/metrics.ts');
let dispose: () => Promise<void>;
let image: Buffer;

beforeAll(async () => {
  ({ infra, dispose } = await inProcess('callbacks_unit', {
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'false',
  }));
  ({ yoga } = await import('../src/http/yoga.ts'));
  policy = await import('../src/callbacks/address-policy.ts');
  delivery = await import('../src/callbacks/delivery.ts');
  outbox = await import('../src/callbacks/store.ts');
  metrics = await import('../src/metrics.ts');
  key = await infra.createKey('olga');
  [{ callbackSecret: secret }] = await infra.sql<{ callbackSecret: string }>(`SELECT "callbackSecret" FROM "ApiKey" WHERE name = 'olga'`);
  [receiver, image] = await Promise.all([startReceiver(), photo(32, 24)]);
  receiver.verifyWith(secret);
});

afterAll(async () => {
  await receiver?.close();
  await dispose?.();
});

describe('the address policy', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['10.1.2.3', 'private (RFC 1918)'],
    ['172.16.0.1', 'private (RFC 1918)'],
    ['172.31.255.255', 'private (RFC 1918)'],
    ['192.168.1.1', 'private (RFC 1918)'],
    ['169.254.169.254', 'link-local (cloud metadata services live here)'],
    ['100.64.0.1', 'carrier-grade NAT (shared address space)'],
    ['100.100.100.200', 'carrier-grade NAT (shared address space)'],
    ['0.0.0.0', 'unspecified ("this network")'],
    ['255.255.255.255', 'reserved (and broadcast)'],
    ['224.0.0.1', 'multicast'],
    ['192.0.2.7', 'documentation'],
    ['198.18.0.1', 'benchmarking'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['fc00::1', 'unique local (fc00::/7)'],
    ['fd00:ec2::254', 'unique local (fc00::/7)'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:a9fe:a9fe', 'link-local (cloud metadata services live here)'],
    ['64:ff9b::a00:1', 'private (RFC 1918)'],
    ['::127.0.0.1', 'not global unicast (outside 2000::/3)'],
    ['2001:db8::1', 'documentation'],
    ['2001::1', 'IETF protocol assignments (Teredo, ORCHID, …)'],
    ['2002:7f00:1::1', '6to4 (can tunnel to any IPv4 address)'],
  ])('refuses %s: %s', (address, reason) => {
    expect(policy.nonPublicReason(address)).toBe(reason);
  });

  it.each(['8.8.8.8', '1.1.1.1', '93.184.215.14', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '2a00:1450:4001:82b::200e', '::ffff:8.8.8.8', '64:ff9b::808:808'])(
    'allows the public address %s',
    (address) => {
      expect(policy.nonPublicReason(address)).toBeNull();
    },
  );
});

const auth = () => ({ authorization: `Bearer ${key}` });
const CREATE = `mutation ($input: CreateTaskInput!) {
  createTask(input: $input) { __typename ... on Task { id callbackUrl } ... on InvalidInput { message field } }
}`;

async function createTask(callbackUrl: string) {
  const form = new FormData();
  const input = { jobDefinition: 'IMAGE_RESIZE', image: null, resize: { width: 8 }, callbackUrl };
  form.append('operations', JSON.stringify({ query: CREATE, variables: { input } }));
  form.append('map', JSON.stringify({ 0: ['variables.input.image'] }));
  form.append('0', new Blob([image as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' }), 'photo.jpg');
  const response = await yoga.fetch('http://callbacks/graphql', { method: 'POST', headers: auth(), body: form });
  expect(response.status).toBe(200);
  return ((await response.json()) as { data: { createTask: Record<string, unknown> } }).data.createTask;
}

describe('createTask', () => {
  const refused = (message: string) => ({ __typename: 'InvalidInput', field: 'callbackUrl', message });
  const notPublic = (host: string) => refused(`callbackUrl's host ${host} does not resolve to public addresses only`);

  it.each([
    ['http://127.0.0.1:8080/hook', refused('callbackUrl must point to a public address; 127.0.0.1 is loopback')],
    ['http://10.0.0.5/hook', refused('callbackUrl must point to a public address; 10.0.0.5 is private (RFC 1918)')],
    ['http://169.254.169.254/latest/meta-data/', refused('callbackUrl must point to a public address; 169.254.169.254 is link-local (cloud metadata services live here)')],
    ['http://[::1]:4000/', refused('callbackUrl must point to a public address; ::1 is loopback')],
    ['http://[::ffff:127.0.0.1]/', refused('callbackUrl must point to a public address; ::ffff:7f00:1 is loopback')],
    ['http://2130706433/', refused('callbackUrl must point to a public address; 127.0.0.1 is loopback')],
    ['http://0x7f.1/', refused('callbackUrl must point to a public address; 127.0.0.1 is loopback')],
    ['http://localhost:4000/hook', notPublic('localhost')],
    ['http://does-not-exist.invalid/hook', notPublic('does-not-exist.invalid')],
    ['ftp://example.com/hook', refused('callbackUrl must be http or https, not ftp')],
    ['file:///etc/passwd', refused('callbackUrl must be http or https, not file')],
    ['http://user:secret@8.8.8.8/hook', refused('callbackUrl must not carry credentials (user:password@); authenticate the callback by its signature')],
    ['/relative/hook', refused('callbackUrl is not an absolute URL')],
    [`http://8.8.8.8/${'a'.repeat(2048)}`, refused('callbackUrl is longer than 2048 characters')],
  ])('refuses %s (InvalidInput, field callbackUrl), storing nothing', async (url, expected) => {
    expect(await createTask(url)).toEqual(expected);
    expect(await infra.blobKeys()).toEqual([]);
    expect(await infra.sql(`SELECT 1 FROM "Task"`)).toEqual([]);
  });

  it('accepts a public address, and stores the URL normalised', async () => {
    const task = await createTask('HTTP://8.8.8.8:8443/hooks/tasklane?x=1');
    expect(task).toMatchObject({ __typename: 'Task', callbackUrl: 'http://8.8.8.8:8443/hooks/tasklane?x=1' });
    await infra.sql(`DELETE FROM "Task"`); // never run: nothing is delivered to it
  });

  it('is refused the same way through REST', async () => {
    const form = new FormData();
    form.append('jobDefinition', 'IMAGE_RESIZE');
    form.append('width', '8');
    form.append('callbackUrl', 'http://169.254.169.254/');
    form.append('image', new Blob([image as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' }), 'photo.jpg');
    const response = await yoga.fetch('http://callbacks/api/tasks', { method: 'POST', headers: auth(), body: form });
    expect([response.status, await response.json()]).toEqual([
      400,
      { error: 'InvalidInput', field: 'callbackUrl', message: 'callbackUrl must point to a public address; 169.254.169.254 is link-local (cloud metadata services live here)' },
    ]);
  });
});

/** A task of olga that ends (DELETED) with `url` as its callback URL, written as any writer would; its message's id. */
async function endedTask(url: string): Promise<{ taskId: string; callbackId: string }> {
  const taskId = randomUUID();
  await infra.sql(
    `INSERT INTO "Task" ("id", "jobDefinition", "params", "ownerId", "callbackUrl") VALUES ($1, 'IMAGE_RESIZE', '{}', 'olga', $2)`,
    [taskId, url],
  );
  await infra.sql(`UPDATE "Task" SET "status" = 'DELETED', "finishedAt" = now(), "version" = "version" + 1 WHERE "id" = $1`, [taskId]);
  const [{ id }] = await infra.sql<{ id: string }>(`SELECT "id" FROM "Callback" WHERE "taskId" = $1`, [taskId]);
  return { taskId, callbackId: id };
}

const attemptsOf = (taskId: string) =>
  infra.sql<{ attempt: number; statusCode: number | null; error: string | null }>(
    `SELECT "attempt", "statusCode", "error" FROM "CallbackAttempt" WHERE "taskId" = $1 ORDER BY "at", "id"`,
    [taskId],
  );
const messageOf = (callbackId: string) =>
  infra.sql<{ attempts: number; delivered: boolean; gaveUp: boolean; pending: boolean; lastAttemptAge: number }>(
    `SELECT "attempts", "deliveredAt" IS NOT NULL AS "delivered", "gaveUpAt" IS NOT NULL AS "gaveUp", "nextAttemptAt" IS NOT NULL AS "pending",
       (SELECT extract(epoch FROM max(a."at") - c."createdAt") * 1000 FROM "CallbackAttempt" a WHERE a."callbackId" = c."id")::float8 AS "lastAttemptAge"
     FROM "Callback" c WHERE "id" = $1`,
    [callbackId],
  ).then((rows) => rows[0]);

describe('delivery', () => {
  let options: import('../src/callbacks/delivery.ts').DeliveryOptions;
  beforeEach(async () => {
    options = { ...delivery.deliveryOptions(), retryBaseMs: 1, timeoutMs: 2000 };
    // Every test starts with nothing due.
    await infra.sql(`UPDATE "Callback" SET "nextAttemptAt" = NULL`);
  });

  it('checks the address again when delivering: a name that resolves to loopback by then is not connected to', async () => {
    receiver.on('/rebound', () => 204);
    const byName = await endedTask(`http://localhost:${receiver.port}/rebound`);
    const byAddress = await endedTask(`http://127.0.0.1:${receiver.port}/rebound`);
    expect(await delivery.deliverDue(options)).toBe(2);
    expect(await attemptsOf(byName.taskId)).toEqual([
      { attempt: 1, statusCode: null, error: 'refused: localhost now resolves to a non-public address (WEBHOOK_ALLOW_PRIVATE_NETWORKS is false)' },
    ]);
    expect(await attemptsOf(byAddress.taskId)).toEqual([
      { attempt: 1, statusCode: null, error: 'refused: 127.0.0.1 is loopback (WEBHOOK_ALLOW_PRIVATE_NETWORKS is false)' },
    ]);
    expect(receiver.requests.filter((r) => r.path === '/rebound')).toEqual([]);
    // Allowed, the same messages go through (due again after the backoff).
    await infra.sql(`UPDATE "Callback" SET "nextAttemptAt" = now() WHERE "id" = ANY($1::uuid[])`, [[byName.callbackId, byAddress.callbackId]]);
    expect(await delivery.deliverDue({ ...options, allowPrivate: true })).toBe(2);
    const received = receiver.requests.filter((r) => r.path === '/rebound');
    expect(received.map((r) => r.headers['webhook-id']).sort()).toEqual([byName.callbackId, byAddress.callbackId].sort());
    for (const request of received) expect(verified(secret, request)).toMatchObject({ type: 'task.deleted', data: { status: 'DELETED' } });
  });

  it('records an attempt whose process died (claimed, never recorded) once its lease is over, and tries again', async () => {
    receiver.on('/lost', () => 204);
    const { taskId, callbackId } = await endedTask(`http://127.0.0.1:${receiver.port}/lost`);
    // A claim whose process dies before the outcome: nothing records it. A zero lease is over at once.
    expect((await outbox.claimDue(10, 0)).map((c) => c.id)).toEqual([callbackId]);
    expect(await delivery.deliverDue({ ...options, allowPrivate: true })).toBe(1);
    expect(await attemptsOf(taskId)).toEqual([
      { attempt: 1, statusCode: null, error: 'no outcome recorded: the delivering process stopped (or lost PostgreSQL) during the attempt' },
      { attempt: 2, statusCode: 204, error: null },
    ]);
    expect(await messageOf(callbackId)).toMatchObject({ attempts: 2, delivered: true, pending: false });
  });

  it('retries a receiver that is down until CALLBACK_RETRY_FOR_MS, makes the last attempt at that age, then gives up (recorded)', async () => {
    const closed = await startReceiver();
    await closed.close();
    const retryForMs = 400;
    const { taskId, callbackId } = await endedTask(`http://127.0.0.1:${closed.port}/gone`);
    const gaveUpBefore = (await metrics.callbackDeliveries.get()).values.find((v) => v.labels.outcome === 'gave_up')?.value ?? 0;
    for (let message = await messageOf(callbackId); message.pending; message = await messageOf(callbackId)) {
      await delivery.deliverDue({ ...options, allowPrivate: true, retryForMs });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const message = await messageOf(callbackId);
    expect(message).toMatchObject({ delivered: false, gaveUp: true, pending: false });
    expect(message.lastAttemptAge).toBeGreaterThanOrEqual(retryForMs);
    const attempts = await attemptsOf(taskId);
    expect(attempts.length).toBeGreaterThan(1);
    for (const attempt of attempts) expect(attempt).toMatchObject({ statusCode: null, error: expect.stringContaining('ECONNREFUSED') });
    const gaveUpAfter = (await metrics.callbackDeliveries.get()).values.find((v) => v.labels.outcome === 'gave_up')?.value ?? 0;
    expect(gaveUpAfter - gaveUpBefore).toBe(1);
  });

  it('gives each message to exactly one of many concurrent claimers (FOR UPDATE SKIP LOCKED)', async () => {
    receiver.on('/many', () => 200);
    const messages = await Promise.all(Array.from({ length: 30 }, () => endedTask(`http://127.0.0.1:${receiver.port}/many`)));
    let delivered = 0;
    // Five claimers at once, three messages each per round, on separate connections.
    while (delivered < messages.length) {
      const rounds = await Promise.all(Array.from({ length: 5 }, () => delivery.deliverDue({ ...options, allowPrivate: true }, 3)));
      delivered += rounds.reduce((a, b) => a + b, 0);
    }
    expect(delivered).toBe(messages.length);
    const ids = receiver.requests.filter((r) => r.path === '/many').map((r) => r.headers['webhook-id']);
    expect(ids.sort()).toEqual(messages.map((m) => m.callbackId).sort());
    for (const { taskId } of messages) expect(await attemptsOf(taskId)).toEqual([{ attempt: 1, statusCode: 200, error: null }]);
  });
});

describe('the migration', () => {
  it('gives every existing key name one signing secret, shared by its keys', async () => {
    const name = `tasklane_test_cbmig_${randomUUID().slice(0, 8)}`;
    const admin = new pg.Client({ connectionString: infra.databaseUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${name}"`);
    await admin.end();
    const url = new URL(infra.databaseUrl);
    url.pathname = `/${name}`;
    const db = new pg.Client({ connectionString: url.toString() });
    await db.connect();
    try {
      const migrations = readdirSync(path.join(ROOT, 'prisma/migrations'), { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
        .sort();
      const mine = migrations.find((m) => m.endsWith('_callbacks'))!;
      const run = (m: string) => db.query(readFileSync(path.join(ROOT, 'prisma/migrations', m, 'migration.sql'), 'utf8'));
      for (const m of migrations.filter((m) => m < mine)) await run(m);
      for (const [keyName, hash] of [['ann', 'h1'], ['ann', 'h2'], ['bob', 'h3']]) {
        await db.query(`INSERT INTO "ApiKey" ("id", "name", "keyHash") VALUES (gen_random_uuid(), $1, $2)`, [keyName, hash]);
      }
      await run(mine);
      const { rows } = await db.query<{ name: string; secrets: string[] }>(
        `SELECT "name", array_agg(DISTINCT "callbackSecret") AS "secrets" FROM "ApiKey" GROUP BY "name" ORDER BY "name"`,
      );
      expect(rows.map((r) => [r.name, r.secrets.length])).toEqual([
        ['ann', 1],
        ['bob', 1],
      ]);
      for (const { secrets } of rows) {
        expect(secrets[0]).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
        expect(Buffer.from(secrets[0].slice(6), 'base64')).toHaveLength(32);
      }
      expect(rows[0].secrets[0]).not.toBe(rows[1].secrets[0]);
    } finally {
      await db.end();
      const cleanup = new pg.Client({ connectionString: infra.databaseUrl });
      await cleanup.connect();
      await cleanup.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await cleanup.end();
    }
  });
});
