// Two-step uploads in-process (yoga.fetch; the s3 store's presigned PUTs go to the run's
// s3rver), against real PostgreSQL, Redis and blob store: createUpload's refusals, the disk
// store's PUT /uploads/<id>, and every way createTask({uploadId}) can be wrong, each a typed
// error; one upload makes exactly one task, however many ask at once; expired uploads go.
// test/uploads.e2e.test.ts runs the whole way with Apollo Client against `npm start`.
import { createHmac, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { photo } from './helpers/images.ts';
import type { TestInfra } from './helpers/infra.ts';
import { inProcess } from './helpers/in-process.ts';

const MAX_UPLOAD_BYTES = 512 * 1024;
const MAX_PENDING_UPLOADS = 3;
const MAX_INPUT_PIXELS = 1_000_000;
const SIGNING_SECRET = 'a-signing-secret-of-the-uploads-test-0123456789';

let infra: TestInfra;
let yoga: typeof import('../src/http/yoga.ts').yoga;
let sweepExpiredUploads: typeof import('../src/tasks/uploads.ts').sweepExpiredUploads;
let dispose: () => Promise<void>;
let jpeg: Buffer;
let png: Buffer;

beforeAll(async () => {
  ({ infra, dispose } = await inProcess('uploads', {
    MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
    MAX_PENDING_UPLOADS_PER_KEY: String(MAX_PENDING_UPLOADS),
    MAX_INPUT_PIXELS: String(MAX_INPUT_PIXELS),
    SIGNING_SECRET,
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
  }));
  ({ yoga } = await import('../src/http/yoga.ts'));
  ({ sweepExpiredUploads } = await import('../src/tasks/uploads.ts'));
  [jpeg, png] = await Promise.all([photo(64, 48), photo(40, 30, 'png')]);
});

afterAll(async () => {
  await dispose?.();
});

/** A fresh API key of its own tenant: the quotas of one test do not touch another's. */
const newKey = () => infra.createKey(`t-${randomUUID().slice(0, 8)}`);

async function gql(key: string, query: string, variables: Record<string, unknown> = {}) {
  const response = await yoga.fetch('http://uploads/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, ...(await response.json()) };
}

const CREATE_UPLOAD = `mutation ($input: CreateUploadInput!) {
  createUpload(input: $input) {
    __typename
    ... on PendingUpload { id url method headers { name value } maxBytes expiresAt }
    ... on Error { message }
    ... on InvalidInput { field }
    ... on TooManyTasks { limit }
  }
}`;

const CREATE_TASK = `mutation ($input: CreateTaskInput!) {
  createTask(input: $input) {
    __typename
    ... on Task { id status source { format width height byteSize } }
    ... on Error { message }
    ... on InvalidInput { field }
    ... on IdempotencyKeyReused { taskId }
  }
}`;

interface Pending {
  id: string;
  url: string;
  method: string;
  headers: { name: string; value: string }[];
  maxBytes: number;
  expiresAt: string;
}

async function createUpload(key: string, contentType: string, byteSize: number): Promise<Pending> {
  const { data } = await gql(key, CREATE_UPLOAD, { input: { contentType, byteSize } });
  expect(data.createUpload.__typename).toBe('PendingUpload');
  return data.createUpload;
}

/** PUTs `body` to the upload's url as a client does (headers as given, unless overridden). */
function put(upload: Pending, body: Uint8Array | ReadableStream<Uint8Array>, headers: Record<string, string> = {}, url = upload.url) {
  const init = {
    method: upload.method,
    headers: { ...Object.fromEntries(upload.headers.map((h) => [h.name, h.value])), ...headers },
    ...(body instanceof ReadableStream ? { body, duplex: 'half' } : { body: new Uint8Array(body) }),
  } as RequestInit;
  // The disk store's url is a path on the API; an s3 one the store's own.
  return url.startsWith('/') ? yoga.fetch(`http://uploads${url}`, init) : fetch(url, init);
}

function createTask(key: string, input: Record<string, unknown>) {
  return gql(key, CREATE_TASK, { input: { jobDefinition: 'IMAGE_RESIZE', resize: { width: 16 }, ...input } });
}

const invalid = (field: string, message: string) => ({ status: 200, data: { createTask: { __typename: 'InvalidInput', field, message } } });

const uploadRow = async (id: string) =>
  (await infra.sql<{ state: string }>(`SELECT "state" FROM "Upload" WHERE "id" = $1`, [id]))[0]?.state ?? null;
const blobOf = (id: string) => infra.blobStore.stat(`uploads/${id}`);

describe('createUpload', () => {
  it('answers where and how to PUT: url, PUT, headers, maxBytes, expiresAt', async () => {
    const key = await newKey();
    const before = Date.now();
    const upload = await createUpload(key, 'Image/JPEG', jpeg.length);
    const after = Date.now();
    expect(upload).toMatchObject({ method: 'PUT', maxBytes: jpeg.length });
    expect(upload.headers).toContainEqual({ name: 'content-type', value: 'image/jpeg' });
    if (infra.storageKind === 'disk') expect(upload.url).toMatch(new RegExp(`^/uploads/${upload.id}\\?exp=\\d+&sig=[\\w-]+$`));
    else expect(upload.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/.*X-Amz-Signature=/);
    // The default UPLOAD_TTL_MS: 15 minutes from when it was made (PostgreSQL's clock is this host's).
    expect(Date.parse(upload.expiresAt)).toBeGreaterThanOrEqual(before + 15 * 60_000 - 5);
    expect(Date.parse(upload.expiresAt)).toBeLessThanOrEqual(after + 15 * 60_000);
  });

  it.each([
    ['a content type that is not a raster image', { contentType: 'image/svg+xml', byteSize: 10 }, 'contentType'],
    ['a content type with parameters', { contentType: 'image/png; q=1', byteSize: 10 }, 'contentType'],
    ['no bytes', { contentType: 'image/png', byteSize: 0 }, 'byteSize'],
    ['a negative size', { contentType: 'image/png', byteSize: -1 }, 'byteSize'],
    ['more than MAX_UPLOAD_BYTES', { contentType: 'image/png', byteSize: MAX_UPLOAD_BYTES + 1 }, 'byteSize'],
  ])('refuses %s: InvalidInput naming the field', async (_, input, field) => {
    const { data } = await gql(await newKey(), CREATE_UPLOAD, { input });
    expect(data.createUpload).toMatchObject({ __typename: 'InvalidInput', field });
  });

  it(`refuses a key's upload over MAX_PENDING_UPLOADS_PER_KEY (${MAX_PENDING_UPLOADS}) unused ones: TooManyTasks, exact under concurrency`, async () => {
    const key = await newKey();
    const answers = await Promise.all(
      Array.from({ length: MAX_PENDING_UPLOADS + 3 }, () => gql(key, CREATE_UPLOAD, { input: { contentType: 'image/jpeg', byteSize: jpeg.length } })),
    );
    const types = answers.map((a) => a.data.createUpload.__typename);
    expect(types.filter((t) => t === 'PendingUpload')).toHaveLength(MAX_PENDING_UPLOADS);
    expect(answers.find((a) => a.data.createUpload.__typename === 'TooManyTasks')!.data.createUpload).toEqual({
      __typename: 'TooManyTasks',
      limit: MAX_PENDING_UPLOADS,
      message: `this key already has ${MAX_PENDING_UPLOADS} pending uploads (not yet used by createTask, not expired), the most it may hold (MAX_PENDING_UPLOADS_PER_KEY)`,
    });
    // A used upload no longer counts.
    const first = answers.find((a) => a.data.createUpload.__typename === 'PendingUpload')!.data.createUpload as Pending;
    expect((await put(first, jpeg)).ok).toBe(true);
    expect((await createTask(key, { uploadId: first.id })).data.createTask.__typename).toBe('Task');
    expect((await gql(key, CREATE_UPLOAD, { input: { contentType: 'image/jpeg', byteSize: 10 } })).data.createUpload.__typename).toBe('PendingUpload');
  });
});

describe('createTask with uploadId', () => {
  it('makes the task of the uploaded image, pointing at its blob (no copy), with its callback URL', async () => {
    const key = await newKey();
    const upload = await createUpload(key, 'image/jpeg', jpeg.length);
    const response = await put(upload, jpeg);
    expect(response.status).toBe(infra.storageKind === 'disk' ? 204 : 200);
    const { data } = await createTask(key, { uploadId: upload.id, callbackUrl: 'http://127.0.0.1:9/hook' });
    expect(data.createTask).toMatchObject({ __typename: 'Task', status: 'CREATED', source: { format: 'JPEG', width: 64, height: 48, byteSize: jpeg.length } });
    const [image] = await infra.sql<{ storageKey: string; callbackUrl: string }>(
      `SELECT i."storageKey", t."callbackUrl" FROM "Task" t JOIN "Image" i ON i."id" = t."sourceImageId" WHERE t."id" = $1`,
      [data.createTask.id],
    );
    expect(image).toEqual({ storageKey: `uploads/${upload.id}`, callbackUrl: 'http://127.0.0.1:9/hook' });
    expect(await uploadRow(upload.id)).toBe('USED');
    expect((await infra.blobKeys()).filter((k) => k.includes(upload.id))).toEqual([`uploads/${upload.id}`]);
  });

  it('of concurrent createTask calls with one uploadId, exactly one creates a task', async () => {
    const key = await newKey();
    const upload = await createUpload(key, 'image/png', png.length);
    expect((await put(upload, png)).ok).toBe(true);
    const answers = await Promise.all(Array.from({ length: 6 }, () => createTask(key, { uploadId: upload.id, run: false })));
    const tasks = answers.filter((a) => a.data.createTask.__typename === 'Task');
    expect(tasks).toHaveLength(1);
    for (const answer of answers.filter((a) => a.data.createTask.__typename !== 'Task')) {
      expect(answer).toEqual(invalid('uploadId', `upload ${upload.id} was already used by a task`));
    }
    const rows = await infra.sql(`SELECT t."id" FROM "Task" t JOIN "Image" i ON i."id" = t."sourceImageId" WHERE i."storageKey" = $1`, [`uploads/${upload.id}`]);
    expect(rows).toHaveLength(1);
  });

  it('with an idempotency key: a retry answers with the same task, another upload under the key is IdempotencyKeyReused', async () => {
    const key = await newKey();
    const upload = await createUpload(key, 'image/jpeg', jpeg.length);
    expect((await put(upload, jpeg)).ok).toBe(true);
    const first = await createTask(key, { uploadId: upload.id, idempotencyKey: 'retry-me' });
    expect(first.data.createTask.__typename).toBe('Task');
    // The upload is used by now: the retry is answered from the key, not refused for that.
    expect((await createTask(key, { uploadId: upload.id, idempotencyKey: 'retry-me' })).data.createTask.id).toBe(first.data.createTask.id);
    const other = await createUpload(key, 'image/jpeg', jpeg.length);
    expect((await put(other, jpeg)).ok).toBe(true);
    expect((await createTask(key, { uploadId: other.id, idempotencyKey: 'retry-me' })).data.createTask).toMatchObject({
      __typename: 'IdempotencyKeyReused',
      taskId: first.data.createTask.id,
    });
    expect(await uploadRow(other.id)).not.toBe('USED'); // untouched, still usable
    expect((await createTask(key, { uploadId: other.id })).data.createTask.__typename).toBe('Task');
  });

  it('refuses an unknown, malformed or foreign uploadId alike: InvalidInput on uploadId', async () => {
    const alice = await newKey();
    const bob = await newKey();
    const unknown = randomUUID();
    expect(await createTask(alice, { uploadId: unknown })).toEqual(invalid('uploadId', `upload ${unknown} does not exist`));
    expect(await createTask(alice, { uploadId: 'nope' })).toEqual(invalid('uploadId', 'upload nope does not exist'));
    const bobs = await createUpload(bob, 'image/jpeg', jpeg.length);
    expect((await put(bobs, jpeg)).ok).toBe(true);
    expect(await createTask(alice, { uploadId: bobs.id })).toEqual(invalid('uploadId', `upload ${bobs.id} does not exist`));
    expect(await uploadRow(bobs.id)).not.toBe('USED'); // still bob's to use
    expect((await createTask(bob, { uploadId: bobs.id })).data.createTask.__typename).toBe('Task');
  });

  it('refuses an upload already used, expired, or never PUT', async () => {
    const key = await newKey();
    const used = await createUpload(key, 'image/jpeg', jpeg.length);
    expect((await put(used, jpeg)).ok).toBe(true);
    expect((await createTask(key, { uploadId: used.id })).data.createTask.__typename).toBe('Task');
    expect(await createTask(key, { uploadId: used.id })).toEqual(invalid('uploadId', `upload ${used.id} was already used by a task`));

    const never = await createUpload(key, 'image/jpeg', jpeg.length);
    expect(await createTask(key, { uploadId: never.id })).toEqual(invalid('uploadId', `upload ${never.id} has no bytes yet: PUT them to its url first`));

    const expired = await createUpload(key, 'image/jpeg', jpeg.length);
    expect((await put(expired, jpeg)).ok).toBe(true);
    await infra.sql(`UPDATE "Upload" SET "expiresAt" = now() - interval '1 second' WHERE "id" = $1`, [expired.id]);
    expect(await createTask(key, { uploadId: expired.id })).toEqual(invalid('uploadId', `upload ${expired.id} has expired; create a new one`));
  });

  it('refuses a blob of another size than declared (InvalidInput) and bytes that are not the declared image (InvalidImage)', async () => {
    const key = await newKey();
    // Written to the store directly: a store that does not enforce the signed length.
    const short = await createUpload(key, 'image/jpeg', jpeg.length);
    await infra.blobStore.put(`uploads/${short.id}`, jpeg.subarray(0, 100), { contentType: 'image/jpeg' });
    expect(await createTask(key, { uploadId: short.id })).toEqual(
      invalid('uploadId', `upload ${short.id} holds 100 bytes, not the ${jpeg.length} declared`),
    );

    const text = Buffer.from('this is not an image, only text of some length');
    const notImage = await createUpload(key, 'image/png', text.length);
    expect((await put(notImage, text)).ok).toBe(true);
    expect((await createTask(key, { uploadId: notImage.id })).data.createTask).toEqual({
      __typename: 'InvalidImage',
      message: 'not a supported raster image (expected JPEG, PNG, WEBP, AVIF, GIF, TIFF; detected from its bytes)',
    });

    const mislabelled = await createUpload(key, 'image/png', jpeg.length);
    expect((await put(mislabelled, jpeg, { 'content-type': 'image/png' })).ok).toBe(true);
    expect((await createTask(key, { uploadId: mislabelled.id })).data.createTask).toEqual({
      __typename: 'InvalidImage',
      message: 'the uploaded bytes are a JPEG image, not image/png as declared',
    });
  });

  it.runIf(process.env.TEST_STORAGE === 's3')('refuses what a store took beyond the signed length (s3rver checks no signature)', async () => {
    const key = await newKey();
    const upload = await createUpload(key, 'image/jpeg', jpeg.length);
    expect((await put(upload, Buffer.concat([jpeg, Buffer.alloc(10)]))).ok).toBe(true);
    expect(await createTask(key, { uploadId: upload.id })).toEqual(
      invalid('uploadId', `upload ${upload.id} holds ${jpeg.length + 10} bytes, not the ${jpeg.length} declared`),
    );
  });

  it('checks the pixel limit on the stored head, as for a multipart upload', async () => {
    const key = await newKey();
    const big = await photo(1200, 1000);
    const upload = await createUpload(key, 'image/jpeg', big.length);
    expect((await put(upload, big)).ok).toBe(true);
    expect((await createTask(key, { uploadId: upload.id })).data.createTask).toEqual({
      __typename: 'InvalidImage',
      message: `image is 1200x1000 = 1200000 pixels, over the limit of ${MAX_INPUT_PIXELS} (MAX_INPUT_PIXELS)`,
    });
  });

  it('wants exactly one of image and uploadId', async () => {
    const key = await newKey();
    expect(await createTask(key, {})).toEqual(invalid('image', 'give the image: a file (image) or a finished upload (uploadId)'));
    const operations = { query: CREATE_TASK, variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: null, uploadId: randomUUID(), resize: { width: 8 } } } };
    const form = new FormData();
    form.append('operations', JSON.stringify(operations));
    form.append('map', JSON.stringify({ 0: ['variables.input.image'] }));
    form.append('0', new Blob([jpeg as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' }), 'photo.jpg');
    const both = await yoga.fetch('http://uploads/graphql', { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
    expect({ status: both.status, ...(await both.json()) }).toEqual(invalid('uploadId', 'give either image or uploadId, not both'));
  });

  it.each([
    ['a string', 'aGVsbG8='],
    ['an object', { name: 'photo.jpg', size: 10 }],
    ['a number', 42],
  ])('refuses %s as image: BAD_USER_INPUT, never an unexpected error', async (_, image) => {
    const answer = await createTask(await newKey(), { image });
    expect(answer.data).toBeUndefined();
    expect(answer.errors).toEqual([
      expect.objectContaining({
        message: expect.stringMatching(/^Variable "\$input" got invalid value .* at "input\.image"; File takes a file part of a multipart request/),
        extensions: { code: 'BAD_USER_INPUT' },
      }),
    ]);
  });

  it('refuses image written into the document (not a variable): a validation error', async () => {
    const answer = await gql(
      await newKey(),
      'mutation { createTask(input: {jobDefinition: IMAGE_RESIZE, image: "x", resize: {width: 8}}) { __typename } }',
    );
    expect(answer.data).toBeUndefined();
    expect(answer.errors).toEqual([expect.objectContaining({ extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })]);
  });
});

describe.runIf(process.env.TEST_STORAGE !== 's3')('PUT /uploads/<id> (the disk store)', () => {
  const sign = (id: string, exp: number) => createHmac('sha256', SIGNING_SECRET).update(`upload.${id}.${exp}`).digest('base64url');
  const at = (id: string, exp: number) => `/uploads/${id}?exp=${exp}&sig=${sign(id, exp)}`;
  const refusal = async (response: Response) => ({ status: response.status, body: await response.json() });

  it('refuses a bad or missing signature (403), an expired URL or upload (410), an unknown upload (404), a GET (405)', async () => {
    const upload = await createUpload(await newKey(), 'image/jpeg', jpeg.length);
    const exp = new URL(upload.url, 'http://x').searchParams.get('exp')!;
    expect(await refusal(await put(upload, jpeg, {}, `/uploads/${upload.id}?exp=${exp}&sig=forged`))).toMatchObject({
      status: 403,
      body: { error: 'InvalidSignature' },
    });
    expect(await refusal(await put(upload, jpeg, {}, `/uploads/${upload.id}`))).toMatchObject({ status: 403, body: { error: 'InvalidSignature' } });
    // Authentic, but for an upload id of its own: not valid for another.
    const other = await createUpload(await newKey(), 'image/jpeg', jpeg.length);
    expect((await put(upload, jpeg, {}, other.url.replace(other.id, upload.id))).status).toBe(403);
    const past = Math.floor(Date.now() / 1000) - 5;
    expect(await refusal(await put(upload, jpeg, {}, at(upload.id, past)))).toMatchObject({ status: 410, body: { error: 'UploadExpired' } });
    const unknown = randomUUID();
    expect(await refusal(await put(upload, jpeg, {}, at(unknown, Number(exp))))).toMatchObject({ status: 404, body: { error: 'UploadDoesNotExist' } });
    expect((await yoga.fetch(`http://uploads${upload.url}`)).status).toBe(405);
    // The row expired before the URL did.
    await infra.sql(`UPDATE "Upload" SET "expiresAt" = now() - interval '1 second' WHERE "id" = $1`, [upload.id]);
    expect(await refusal(await put(upload, jpeg))).toMatchObject({ status: 410, body: { error: 'UploadExpired' } });
    expect(await blobOf(upload.id)).toBeNull();
  });

  it('refuses more bytes than declared (413, declared or streamed), fewer (400), another type (415): nothing kept, PUT again works', async () => {
    const key = await newKey();
    const upload = await createUpload(key, 'image/jpeg', jpeg.length);
    const longer = Buffer.concat([jpeg, Buffer.alloc(10)]);
    expect(await refusal(await put(upload, longer))).toMatchObject({ status: 413, body: { error: 'PayloadTooLarge' } });
    // Chunked, no Content-Length: counted while it streams, refused when it passes the size.
    let pulled = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += 4096;
        if (pulled > 10 * MAX_UPLOAD_BYTES) controller.close();
        else controller.enqueue(new Uint8Array(4096));
      },
    });
    expect(await refusal(await put(upload, stream))).toMatchObject({ status: 413, body: { error: 'PayloadTooLarge', message: `the body is over the ${jpeg.length} bytes declared` } });
    expect(pulled).toBeLessThan(10 * MAX_UPLOAD_BYTES); // stopped reading, not drained
    expect(await refusal(await put(upload, jpeg.subarray(0, 100)))).toMatchObject({ status: 400, body: { error: 'SizeMismatch' } });
    expect(await refusal(await put(upload, jpeg, { 'content-type': 'image/png' }))).toMatchObject({ status: 415, body: { error: 'UnsupportedMediaType' } });
    expect(await blobOf(upload.id)).toBeNull();
    expect(await uploadRow(upload.id)).toBe('PENDING');

    expect((await put(upload, jpeg)).status).toBe(204);
    expect((await blobOf(upload.id))?.byteSize).toBe(jpeg.length);
    // Once there, the bytes cannot be replaced (createTask reads what was checked).
    expect(await refusal(await put(upload, png))).toMatchObject({ status: 409, body: { error: 'UploadConflict' } });
    expect((await createTask(key, { uploadId: upload.id })).data.createTask.__typename).toBe('Task');
    expect(await refusal(await put(upload, jpeg))).toMatchObject({ status: 409, body: { error: 'UploadConflict' } });
    // Timed under one bounded route label, not one per upload id.
    const metrics = await (await yoga.fetch('http://uploads/metrics')).text();
    expect(metrics).toMatch(/tasklane_http_request_duration_seconds_count\{[^}]*route="\/uploads\/:id"[^}]*status="204"[^}]*\} [1-9]/);
    expect(metrics).not.toContain(upload.id);
  });
});

describe('expired uploads', () => {
  it("are the only ones that go: the orphan sweep leaves a pending upload's blob alone, however old", async () => {
    const { sweepOrphanBlobs } = await import('../src/tasks/retention.ts');
    const upload = await createUpload(await newKey(), 'image/jpeg', jpeg.length);
    expect((await put(upload, jpeg)).ok).toBe(true);
    const listing = infra.blobStore.list({ prefix: 'uploads/' })[Symbol.asyncIterator]();
    await sweepOrphanBlobs(listing, { graceMs: -60_000 });
    expect(await blobOf(upload.id)).not.toBeNull();
  });

  it('are removed by the sweep: the row, and the blob unless a task took it over', async () => {
    const key = await newKey();
    const unused = await createUpload(key, 'image/jpeg', jpeg.length);
    expect((await put(unused, jpeg)).ok).toBe(true);
    const used = await createUpload(key, 'image/jpeg', jpeg.length);
    expect((await put(used, jpeg)).ok).toBe(true);
    const task = (await createTask(key, { uploadId: used.id })).data.createTask;
    const live = await createUpload(key, 'image/jpeg', jpeg.length);
    await infra.sql(`UPDATE "Upload" SET "expiresAt" = now() - interval '1 second' WHERE "id" = ANY($1::uuid[])`, [[unused.id, used.id]]);

    while ((await sweepExpiredUploads()) > 0);
    expect(await uploadRow(unused.id)).toBeNull();
    expect(await blobOf(unused.id)).toBeNull();
    expect(await uploadRow(used.id)).toBeNull();
    expect(await blobOf(used.id)).not.toBeNull(); // the task's source image now
    expect(await uploadRow(live.id)).toBe('PENDING');
    const [{ count }] = await infra.sql<{ count: number }>(`SELECT count(*)::int AS count FROM "Task" WHERE "id" = $1 AND "sourceImageId" IS NOT NULL`, [task.id]);
    expect(count).toBe(1);
  });
});
