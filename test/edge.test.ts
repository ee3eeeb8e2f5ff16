// The HTTP edge in-process (yoga.fetch, no server boot), against real PostgreSQL and Redis:
// the parsing of signed image URLs. test/security.e2e.test.ts makes attacks over the
// network against real processes where the network matters.
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';

let infra: TestInfra;
let key: string;
let yoga: typeof import('../src/http/yoga.ts').yoga;
let dispose: () => Promise<void>;

beforeAll(async () => {
  infra = await createInfra('edge');
  // The configuration is read when src/ is first imported.
  Object.assign(process.env, {
    DATABASE_URL: infra.databaseUrl,
    REDIS_PREFIX: infra.redisPrefix,
    LOG_LEVEL: 'silent',
  });
  const { migrate } = await import('../src/migrate.ts');
  await migrate(infra.databaseUrl);
  ({ yoga } = await import('../src/http/yoga.ts'));
  const { loadSigningSecret } = await import('../src/image-urls.ts');
  await loadSigningSecret();
  const { prisma } = await import('../src/db.ts');
  const { closeRedis } = await import('../src/redis.ts');
  dispose = async () => {
    await closeRedis();
    await prisma.$disconnect();
  };
  key = await infra.createKey('edge');
});

afterAll(async () => {
  await dispose?.();
  await infra?.dispose();
});

interface Answer {
  status: number;
  body: { data?: Record<string, unknown> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };
}

async function answer(response: Response): Promise<Answer> {
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : {} };
}

const auth = () => ({ authorization: `Bearer ${key}` });

/** A GraphQL multipart request (operations, map, files) as a client library sends it. */
function multipart(operations: string, map: string, files: Record<string, Uint8Array> = {}) {
  const form = new FormData();
  form.append('operations', operations);
  form.append('map', map);
  for (const [name, bytes] of Object.entries(files)) form.append(name, new Blob([bytes as Uint8Array<ArrayBuffer>]), 'upload.bin');
  return yoga.fetch('http://edge/graphql', { method: 'POST', headers: auth(), body: form });
}

const CREATE = `mutation ($input: CreateTaskInput!) {
  createTask(input: $input) { __typename ... on Task { id source { id url } } ... on Error { message } }
}`;

function createTask(bytes: Uint8Array) {
  const operations = { query: CREATE, variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: null, resize: { width: 8 } } } };
  return multipart(JSON.stringify(operations), JSON.stringify({ 0: ['variables.input.image'] }), { 0: bytes });
}

describe('signed image URLs: one canonical exp, one sig', () => {
  let imageId: string;
  let exp: string;
  let sig: string;
  const fetchImage = (query: string) => yoga.fetch(`http://edge/images/${imageId}?${query}`);

  beforeAll(async () => {
    const created = (await answer(await createTask(await photo(16, 16)))).body.data!.createTask as { source: { id: string; url: string } };
    const url = new URL(created.source.url, 'http://edge');
    imageId = created.source.id;
    exp = url.searchParams.get('exp')!;
    sig = url.searchParams.get('sig')!;
  });

  it('accepts the URL as handed out', async () => {
    expect((await fetchImage(`exp=${exp}&sig=${sig}`)).status).toBe(200);
    expect((await fetchImage(`sig=${sig}&exp=${exp}&other=1`)).status).toBe(200);
  });

  it.each([
    ['a leading zero on exp', (e: string, s: string) => `exp=0${e}&sig=${s}`],
    ['a plus sign on exp', (e: string, s: string) => `exp=%2B${e}&sig=${s}`],
    ['a second sig after the valid one', (e: string, s: string) => `exp=${e}&sig=${s}&sig=bad`],
    ['a second sig before the valid one', (e: string, s: string) => `exp=${e}&sig=bad&sig=${s}`],
    ['the valid sig twice', (e: string, s: string) => `exp=${e}&sig=${s}&sig=${s}`],
    ['a second exp', (e: string, s: string) => `exp=${e}&exp=${Number(e) + 86_400}&sig=${s}`],
    ['no sig', (e: string) => `exp=${e}`],
    ['no exp', (_: string, s: string) => `sig=${s}`],
  ])('refuses %s like a bad signature (403)', async (_, query) => {
    const response = await fetchImage(query(exp, sig));
    expect([response.status, await response.text()]).toEqual([403, 'invalid signature\n']);
  });

  it('still tells an authentic but expired signature apart', async () => {
    const [{ value }] = await infra.sql<{ value: string }>(`SELECT value FROM "Setting" WHERE key = 'imageUrlSigningSecret'`);
    const past = Math.floor(Date.now() / 1000) - 60;
    const expired = createHmac('sha256', value).update(`${imageId}.${past}`).digest('base64url');
    const response = await fetchImage(`exp=${past}&sig=${expired}`);
    expect([response.status, await response.text()]).toEqual([403, 'expired signature\n']);
  });
});
