// The REST facade (/api) against the running service: every status code of the original
// REST design, each real response validated against the served OpenAPI 3.1 document, and
// at the end a check that every documented response was actually produced.
import { randomUUID } from 'node:crypto';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import * as ajvFormats from 'ajv-formats';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from './helpers/client.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { SCRIPTS, startService, type Service } from './helpers/service.ts';

// ajv-formats is CommonJS with a default export; how ESM interop presents it varies.
const addFormats = ((ajvFormats as { default?: unknown }).default ?? ajvFormats) as (ajv: Ajv2020) => Ajv2020;

const QUOTA = 6;
const MAX_UPLOAD_BYTES = 256 * 1024;
const PENDING_UPLOADS = 2;

let infra: TestInfra;
let service: Service;
let aliceKey: string;
let bobKey: string;
let jpeg: Buffer;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a parsed JSON document
let doc: any;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const exercised = new Set<string>();
const validators = new Map<string, ReturnType<typeof ajv.compile>>();

beforeAll(async () => {
  infra = await createInfra('rest');
  [service, jpeg] = await Promise.all([
    startService(infra, {
      WORKERS: '1',
      MAX_ACTIVE_TASKS_PER_KEY: String(QUOTA),
      MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
      MAX_PENDING_UPLOADS_PER_KEY: String(PENDING_UPLOADS),
    }),
    photo(800, 600),
  ]);
  aliceKey = await infra.createKey('alice');
  bobKey = await infra.createKey('bob');
  const response = await fetch(`${service.url}/api/openapi.json`);
  expect(response.status).toBe(200);
  doc = await response.json();
  ajv.addSchema(doc, 'openapi.json');
});

afterAll(async () => {
  await service?.stop();
  await infra?.dispose();
});

const pointer = (...parts: string[]) => parts.map((p) => encodeURIComponent(p.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/');

interface Reply {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON bodies
  body: any;
}

/**
 * One REST call. Its response must be documented for (template, method, status) and its
 * body must validate against the documented schema.
 */
async function call(
  method: string,
  template: string,
  path: string,
  options: { key?: string | null; body?: BodyInit; baseUrl?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const key = options.key === undefined ? aliceKey : options.key;
  const response = await fetch(`${options.baseUrl ?? service.url}${path}`, {
    method,
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...options.headers },
    body: options.body,
  });
  expect(response.headers.get('content-type')).toBe('application/json');
  const body = await response.json();
  const operation = doc.paths[template]?.[method.toLowerCase()];
  expect(operation, `${method} ${template} is documented`).toBeDefined();
  expect(operation.responses[String(response.status)], `${method} ${template} → ${response.status} is documented`).toBeDefined();
  const schemaRef = `openapi.json#/${pointer('paths', template, method.toLowerCase(), 'responses', String(response.status), 'content', 'application/json', 'schema')}`;
  const validate = validators.get(schemaRef) ?? validators.set(schemaRef, ajv.compile({ $ref: schemaRef })).get(schemaRef)!;
  expect(validate(body), `${method} ${path} → ${response.status}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body)}`).toBe(true);
  exercised.add(`${method} ${template} ${response.status}`);
  return { status: response.status, headers: response.headers, body };
}

function form(fields: Record<string, string | Blob>): FormData {
  const data = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (typeof value === 'string') data.append(name, value);
    else data.append(name, value, 'upload.jpg');
  }
  return data;
}

const image = (bytes: Uint8Array = jpeg) => new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' });

async function create(fields: Record<string, string | Blob> = {}, key?: string): Promise<string> {
  const reply = await call('POST', '/api/tasks', '/api/tasks', {
    key,
    body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(), width: '100', ...fields }),
  });
  expect(reply.status).toBe(201);
  return reply.body.id;
}

describe('the OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc));
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });
});

describe('REST lifecycle', () => {
  it('creates, runs, follows, fetches and deletes a task', async () => {
    const created = await call('POST', '/api/tasks', '/api/tasks', {
      body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(), width: '320', format: 'webp', quality: '70' }),
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    expect(created.body).toEqual({ id });
    expect(created.headers.get('location')).toBe(`/api/tasks/${id}`);

    const status = await call('GET', '/api/tasks/{id}/status', `/api/tasks/${id}/status`);
    expect(status).toMatchObject({ status: 200, body: { id, status: 'CREATED', progress: 0 } });

    const fresh = await call('GET', '/api/tasks/{id}', created.headers.get('location')!);
    expect(fresh.body).toMatchObject({
      id,
      status: 'CREATED',
      jobDefinition: 'IMAGE_RESIZE',
      resize: { width: 320, height: null, fit: 'COVER', format: 'WEBP', quality: 70, withoutEnlargement: false },
      resultOfJob: null,
      resultUrl: null,
      error: null,
      startedAt: null,
    });

    const run = await call('POST', '/api/tasks/{id}/run', `/api/tasks/${id}/run`);
    expect(run.status).toBe(202);
    expect(run.body).toMatchObject({ id, status: 'QUEUED' });

    const again = await call('POST', '/api/tasks/{id}/run', `/api/tasks/${id}/run`);
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ error: 'InvalidTaskState' });
    expect(['QUEUED', 'RUNNING', 'DONE']).toContain(again.body.status);

    await until(
      async () => (await call('GET', '/api/tasks/{id}/status', `/api/tasks/${id}/status`)).body,
      (body) => body.status === 'DONE' || body.status === 'FAILED',
      60_000,
      200,
    );
    const done = await call('GET', '/api/tasks/{id}', `/api/tasks/${id}`);
    expect(done.body).toMatchObject({ id, status: 'DONE', progress: 1, error: null });
    expect(done.body.resultOfJob).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Date(done.body.finishedAt).getTime()).toBeGreaterThanOrEqual(new Date(done.body.startedAt).getTime());
    const bytes = await fetch(`${service.url}${done.body.resultUrl}`);
    expect(bytes.status).toBe(200);
    expect(bytes.headers.get('content-type')).toBe('image/webp');
    const meta = await sharp(Buffer.from(await bytes.arrayBuffer())).metadata();
    expect(meta).toMatchObject({ format: 'webp', width: 320, height: 240 });

    // The same task through GraphQL: one service behind both APIs.
    const viaGraphql = await fetch(`${service.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${aliceKey}` },
      body: JSON.stringify({ query: `{ task(id: "${id}") { ... on Task { status resultOfJob } } }` }),
    });
    expect((await viaGraphql.json()).data.task).toEqual({ status: 'DONE', resultOfJob: done.body.resultOfJob });

    const deleted = await call('DELETE', '/api/tasks/{id}', `/api/tasks/${id}`);
    expect(deleted).toMatchObject({ status: 200, body: { id, status: 'DELETED' } });
    const gone = await call('GET', '/api/tasks/{id}', `/api/tasks/${id}`);
    expect(gone.body).toMatchObject({ status: 'DELETED', resultOfJob: null, resultUrl: null });
    expect((await fetch(`${service.url}${done.body.resultUrl}`)).status).toBe(404);
    const deletedAgain = await call('DELETE', '/api/tasks/{id}', `/api/tasks/${id}`);
    expect(deletedAgain).toMatchObject({ status: 200, body: { id, status: 'DELETED' } });
    const runDeleted = await call('POST', '/api/tasks/{id}/run', `/api/tasks/${id}/run`);
    expect(runDeleted).toMatchObject({ status: 409, body: { error: 'InvalidTaskState', status: 'DELETED' } });
  });

  it('walks the OpenAPI links from a real create: each resolves to a real operation that answers', async () => {
    // Every operation by operationId, with its method, path template and parameter names.
    const operations = new Map<string, { method: string; template: string; parameters: string[] }>();
    for (const [template, item] of Object.entries<Record<string, { operationId?: string; parameters?: { name: string }[] }>>(doc.paths)) {
      const shared = (item.parameters as unknown as { name: string }[] | undefined) ?? [];
      for (const [method, operation] of Object.entries(item)) {
        if (!operation?.operationId) continue;
        operations.set(operation.operationId, { method: method.toUpperCase(), template, parameters: [...shared, ...(operation.parameters ?? [])].map((p) => p.name) });
      }
    }
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed JSON
    const linksOf = (operationId: string, status: string): Record<string, any> => {
      const { method, template } = operations.get(operationId)!;
      return doc.paths[template][method.toLowerCase()].responses[status].links ?? {};
    };
    /** The request a link describes, from the response it hangs on (only `$response.body#/…` is used). */
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed JSON
    const follow = (target: any, body: unknown) => {
      const operation = operations.get(target.operationId);
      expect(operation, `link to ${target.operationId} names a real operation`).toBeDefined();
      let path = operation!.template;
      for (const [name, expression] of Object.entries<string>(target.parameters)) {
        expect(operation!.parameters, `${target.operationId} takes ${name}`).toContain(name);
        const pointer = /^\$response\.body#(\/.*)$/.exec(expression);
        expect(pointer, expression).not.toBeNull();
        const value = pointer![1].split('/').slice(1).reduce<unknown>((at, part) => (at as Record<string, unknown>)?.[part], body);
        expect(typeof value, `${expression} resolves`).toBe('string');
        path = path.replace(`{${name}}`, encodeURIComponent(value as string));
      }
      expect(path).not.toMatch(/[{}]/);
      return { ...operation!, path };
    };

    const created = await call('POST', '/api/tasks', '/api/tasks', { body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(), width: '40' }) });
    const id = created.body.id;
    const fromCreate = linksOf('createTask', '201');
    const fromRun = linksOf('runTask', '202');
    expect(Object.values(fromCreate).map((l) => l.operationId).sort()).toEqual(['deleteTask', 'getTask', 'getTaskStatus', 'runTask']);
    expect(Object.values(fromRun).map((l) => l.operationId).sort()).toEqual(['deleteTask', 'getTask', 'getTaskStatus']);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed JSON
    const go = async (links: Record<string, any>, operationId: string, from: unknown, expected: number) => {
      const { method, template, path } = follow(Object.values(links).find((l) => l.operationId === operationId), from);
      const reply = await call(method, template, path);
      expect(reply.status, `${operationId} through a link`).toBe(expected);
      expect(reply.body.id).toBe(id);
      return { path, reply };
    };
    await go(fromCreate, 'getTaskStatus', created.body, 200);
    expect((await go(fromCreate, 'getTask', created.body, 200)).path).toBe(created.headers.get('location'));
    const run = (await go(fromCreate, 'runTask', created.body, 202)).reply;
    await go(fromRun, 'getTaskStatus', run.body, 200);
    await go(fromRun, 'getTask', run.body, 200);
    await go(fromRun, 'deleteTask', run.body, 200);
    expect((await go(fromCreate, 'deleteTask', created.body, 200)).reply.body.status).toBe('DELETED');
  });

  it('creates a task from an upload: POST /api/uploads, PUT the bytes, POST /api/tasks with uploadId (form-encoded)', async () => {
    const created = await call('POST', '/api/uploads', '/api/uploads', {
      body: new URLSearchParams({ contentType: 'image/jpeg', byteSize: String(jpeg.length) }),
    });
    expect(created).toMatchObject({ status: 201, body: { method: 'PUT', maxBytes: jpeg.length } });
    const upload = created.body;
    const put = await fetch(new URL(upload.url, service.url), {
      method: upload.method,
      headers: Object.fromEntries(upload.headers.map((h: { name: string; value: string }) => [h.name, h.value])),
      body: new Uint8Array(jpeg),
    });
    expect(put.ok).toBe(true);
    const task = await call('POST', '/api/tasks', '/api/tasks', {
      body: new URLSearchParams({ jobDefinition: 'IMAGE_RESIZE', uploadId: upload.id, width: '64' }),
    });
    expect(task.status).toBe(201);
    expect((await call('GET', '/api/tasks/{id}', `/api/tasks/${task.body.id}`)).body).toMatchObject({ status: 'CREATED', resize: { width: 64 } });
    const again = await call('POST', '/api/tasks', '/api/tasks', {
      body: new URLSearchParams({ jobDefinition: 'IMAGE_RESIZE', uploadId: upload.id, width: '64' }),
    });
    expect(again).toMatchObject({ status: 400, body: { error: 'InvalidInput', field: 'uploadId', message: `upload ${upload.id} was already used by a task` } });
    const both = await call('POST', '/api/tasks', '/api/tasks', { body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(), uploadId: upload.id, width: '64' }) });
    expect(both).toMatchObject({ status: 400, body: { error: 'InvalidInput', field: 'uploadId' } });
    await call('DELETE', '/api/tasks/{id}', `/api/tasks/${task.body.id}`);
  });

  it('refuses a bad upload (400 InvalidInput naming the field) and one over MAX_PENDING_UPLOADS_PER_KEY (429 TooManyTasks)', async () => {
    const cases: [Record<string, string>, string][] = [
      [{ contentType: 'text/plain', byteSize: '10' }, 'contentType'],
      [{ contentType: 'image/png' }, 'byteSize'],
      [{ contentType: 'image/png', byteSize: '0' }, 'byteSize'],
      [{ contentType: 'image/png', byteSize: String(MAX_UPLOAD_BYTES + 1) }, 'byteSize'],
      [{ contentType: 'image/png', byteSize: '1e3' }, 'byteSize'],
    ];
    for (const [fields, field] of cases) {
      const reply = await call('POST', '/api/uploads', '/api/uploads', { body: new URLSearchParams(fields) });
      expect(reply, JSON.stringify(fields)).toMatchObject({ status: 400, body: { error: 'InvalidInput', field } });
    }
    const dave = await infra.createKey('dave');
    const upload = () => call('POST', '/api/uploads', '/api/uploads', { key: dave, body: new URLSearchParams({ contentType: 'image/png', byteSize: '10' }) });
    for (let i = 0; i < PENDING_UPLOADS; i++) expect((await upload()).status).toBe(201);
    expect(await upload()).toMatchObject({ status: 429, body: { error: 'TooManyTasks', limit: PENDING_UPLOADS } });
  });

  it('reports a failed task with its error', async () => {
    const truncated = jpeg.subarray(0, Math.floor(jpeg.byteLength * 0.5));
    const id = (await call('POST', '/api/tasks', '/api/tasks', { body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(truncated), width: '50' }) })).body.id;
    await call('POST', '/api/tasks/{id}/run', `/api/tasks/${id}/run`);
    const failed = await until(
      async () => (await call('GET', '/api/tasks/{id}', `/api/tasks/${id}`)).body,
      (body) => body.status === 'DONE' || body.status === 'FAILED',
      60_000,
      200,
    );
    expect(failed).toMatchObject({ status: 'FAILED', resultOfJob: null, resultUrl: null });
    expect(failed.error).toMatch(/image/);
    await call('DELETE', '/api/tasks/{id}', `/api/tasks/${id}`);
  });
});

describe('REST errors', () => {
  const everyTaskRoute: [string, string, string][] = [
    ['GET', '/api/tasks/{id}', ''],
    ['DELETE', '/api/tasks/{id}', ''],
    ['POST', '/api/tasks/{id}/run', '/run'],
    ['GET', '/api/tasks/{id}/status', '/status'],
  ];

  it('400 WrongTaskIdFormat for a malformed id, on every task route', async () => {
    for (const [method, template, suffix] of everyTaskRoute) {
      const reply = await call(method, template, `/api/tasks/not-a-uuid${suffix}`);
      expect(reply.status, `${method} ${template}`).toBe(400);
      expect(reply.body.error).toBe('WrongTaskIdFormat');
    }
  });

  it('404 TaskDoesNotExist for a missing or a foreign task, on every task route', async () => {
    const foreign = await create({}, bobKey);
    for (const id of [randomUUID(), foreign]) {
      for (const [method, template, suffix] of everyTaskRoute) {
        const reply = await call(method, template, `/api/tasks/${id}${suffix}`);
        expect(reply.status, `${method} ${template} ${id}`).toBe(404);
        expect(reply.body.error).toBe('TaskDoesNotExist');
      }
    }
    // Bob's task was untouched by Alice's delete and run.
    expect((await call('GET', '/api/tasks/{id}/status', `/api/tasks/${foreign}/status`, { key: bobKey })).body.status).toBe('CREATED');
    await call('DELETE', '/api/tasks/{id}', `/api/tasks/${foreign}`, { key: bobKey });
  });

  it('401 without a key or with a wrong one, on every route', async () => {
    const id = randomUUID();
    for (const key of [null, 'tl_not-a-key']) {
      for (const [method, template, suffix] of everyTaskRoute) {
        const reply = await call(method, template, `/api/tasks/${id}${suffix}`, { key });
        expect(reply.status).toBe(401);
        expect(reply.body.error).toBe('Unauthenticated');
        expect(reply.headers.get('www-authenticate')).toBe('Bearer');
      }
      const post = await call('POST', '/api/tasks', '/api/tasks', { key, body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(), width: '10' }) });
      expect(post.status).toBe(401);
      const upload = await call('POST', '/api/uploads', '/api/uploads', { key, body: new URLSearchParams({ contentType: 'image/png', byteSize: '10' }) });
      expect(upload.status).toBe(401);
    }
  });

  it('400 WrongJobDefinitionValue for an unknown or missing job definition', async () => {
    for (const jobDefinition of ['VIDEO_TRANSCODE', '']) {
      const reply = await call('POST', '/api/tasks', '/api/tasks', { body: form({ jobDefinition, image: image(), width: '10' }) });
      expect(reply.status).toBe(400);
      expect(reply.body.error).toBe('WrongJobDefinitionValue');
    }
  });

  it('400 InvalidInput naming the field, for bad resize fields or a missing image', async () => {
    const cases: [Record<string, string | Blob>, string][] = [
      [{ width: '0' }, 'width'],
      [{ width: 'wide' }, 'width'],
      [{ width: '', height: '' }, 'width'],
      [{ height: '99999' }, 'height'],
      [{ quality: '101' }, 'quality'],
      [{ fit: 'squash' }, 'fit'],
      [{ format: 'bmp' }, 'format'],
      [{ withoutEnlargement: 'maybe' }, 'withoutEnlargement'],
      [{ image: 'not a file' }, 'image'],
    ];
    for (const [fields, field] of cases) {
      const reply = await call('POST', '/api/tasks', '/api/tasks', {
        body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(), width: '10', ...fields }),
      });
      expect(reply.status, JSON.stringify(fields)).toBe(400);
      expect(reply.body, JSON.stringify(fields)).toMatchObject({ error: 'InvalidInput', field });
    }
    const noImage = new FormData();
    noImage.append('jobDefinition', 'IMAGE_RESIZE');
    noImage.append('width', '10');
    expect((await call('POST', '/api/tasks', '/api/tasks', { body: noImage })).body).toMatchObject({ error: 'InvalidInput', field: 'image' });
    const notMultipart = await call('POST', '/api/tasks', '/api/tasks', { body: JSON.stringify({ jobDefinition: 'IMAGE_RESIZE' }) });
    expect(notMultipart.body).toMatchObject({ error: 'InvalidInput' });
  });

  it('400 InvalidInput naming the field, for an integer field not written as plain decimal digits', async () => {
    // One rule for every integer field: no spaces, sign, leading zero, fraction, exponent or hex.
    const notIntegers = [' 10', '10 ', '\t10', '10.0', '0x10', '1e2', '+10', '-5', '010', '１０', '1234567890'];
    for (const name of ['width', 'height', 'quality']) {
      for (const value of notIntegers) {
        const reply = await call('POST', '/api/tasks', '/api/tasks', {
          body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(), width: '10', [name]: value }),
        });
        expect(reply.status, `${name}=${JSON.stringify(value)}`).toBe(400);
        expect(reply.body, `${name}=${JSON.stringify(value)}`).toMatchObject({ error: 'InvalidInput', field: name });
      }
    }
    // Plain digits still work for each of them.
    const ok = await call('POST', '/api/tasks', '/api/tasks', {
      body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(), width: '10', height: '12', quality: '80' }),
    });
    expect(ok.status).toBe(201);
    await call('DELETE', '/api/tasks/{id}', `/api/tasks/${ok.body.id}`);
  });

  it('400 InvalidImage for bytes that are not a supported image', async () => {
    for (const bytes of [new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg"/>'), new Uint8Array(0)]) {
      const reply = await call('POST', '/api/tasks', '/api/tasks', {
        body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(bytes), width: '10' }),
      });
      expect(reply.status).toBe(400);
      expect(reply.body.error).toBe('InvalidImage');
    }
  });

  it('413 PayloadTooLarge for a body over MAX_UPLOAD_BYTES', async () => {
    const reply = await call('POST', '/api/tasks', '/api/tasks', {
      body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(new Uint8Array(MAX_UPLOAD_BYTES + 1)), width: '10' }),
    });
    expect(reply.status).toBe(413);
    expect(reply.body.error).toBe('PayloadTooLarge');
  });

  it('429 TooManyTasks when the key holds its quota of active tasks', async () => {
    const carol = await infra.createKey('carol');
    for (let i = 0; i < QUOTA; i++) await create({}, carol);
    const reply = await call('POST', '/api/tasks', '/api/tasks', { key: carol, body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(), width: '10' }) });
    expect(reply.status).toBe(429);
    expect(reply.body).toMatchObject({ error: 'TooManyTasks', limit: QUOTA });
  });

  it('429 RateLimited, with Retry-After, on every operation once the key is over RATE_LIMIT_PER_MINUTE', async () => {
    // A second API process on the same database and Redis, with a limit of one request a minute.
    const limited = await startService(infra, { RATE_LIMIT_PER_MINUTE: '1' }, SCRIPTS.api);
    try {
      const erin = await infra.createKey('erin');
      const id = randomUUID();
      const first = await call('GET', '/api/tasks/{id}', `/api/tasks/${id}`, { key: erin, baseUrl: limited.url });
      expect(first.status).toBe(404); // the one request of the minute
      const operations: [string, string, string, BodyInit?][] = [
        ['POST', '/api/tasks', '/api/tasks', form({ jobDefinition: 'IMAGE_RESIZE', image: image(), width: '10' })],
        ['POST', '/api/uploads', '/api/uploads', new URLSearchParams({ contentType: 'image/png', byteSize: '10' })],
        ['GET', '/api/tasks/{id}', `/api/tasks/${id}`],
        ['DELETE', '/api/tasks/{id}', `/api/tasks/${id}`],
        ['POST', '/api/tasks/{id}/run', `/api/tasks/${id}/run`],
        ['GET', '/api/tasks/{id}/status', `/api/tasks/${id}/status`],
      ];
      for (const [method, template, path, body] of operations) {
        const reply = await call(method, template, path, { key: erin, body, baseUrl: limited.url });
        expect(reply.status, `${method} ${template}`).toBe(429);
        expect(reply.body).toMatchObject({ error: 'RateLimited' });
        expect(Number(reply.headers.get('retry-after'))).toBe(reply.body.retryAfter);
        expect(reply.body.retryAfter).toBeGreaterThanOrEqual(1);
      }
      // Another key is not affected.
      const frank = await infra.createKey('frank');
      expect((await call('GET', '/api/tasks/{id}', `/api/tasks/${id}`, { key: frank, baseUrl: limited.url })).status).toBe(404);
    } finally {
      await limited.stop();
    }
  });

  it('404 for an unknown endpoint and 405 for a wrong method, in the same error format', async () => {
    const unknown = await fetch(`${service.url}/api/jobs`, { headers: { authorization: `Bearer ${aliceKey}` } });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: 'NotFound' });
    const wrong = await fetch(`${service.url}/api/tasks/${randomUUID()}/run`, { headers: { authorization: `Bearer ${aliceKey}` } });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('POST');
    expect(await wrong.json()).toMatchObject({ error: 'MethodNotAllowed' });
  });
});

describe('REST Idempotency-Key', () => {
  const post = (idempotencyKey: string | null, key: string, fields: Record<string, string | Blob> = {}) =>
    call('POST', '/api/tasks', '/api/tasks', {
      key,
      headers: idempotencyKey === null ? {} : { 'idempotency-key': idempotencyKey },
      body: form({ jobDefinition: 'IMAGE_RESIZE', image: image(), width: '100', ...fields }),
    });
  const tasksOf = async (owner: string) =>
    (await infra.sql<{ n: number }>(`SELECT count(*)::int AS n FROM "Task" WHERE "ownerId" = $1`, [owner]))[0].n;

  it('answers a repeated request with the status and body of the first answer, making no second task', async () => {
    const gina = await infra.createKey('gina');
    const first = await post('a3f1c2', gina);
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const blobs = (await infra.blobKeys()).length;
    // The draft's quoted form ("…") names the same key as the bare one.
    for (const header of ['a3f1c2', '"a3f1c2"']) {
      const again = await post(header, gina);
      expect({ status: again.status, body: again.body, location: again.headers.get('location') }).toEqual({
        status: 201,
        body: first.body,
        location: first.headers.get('location'),
      });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
    }
    expect(await tasksOf('gina')).toBe(1);
    expect((await infra.blobKeys()).length).toBe(blobs);
    // GraphQL and REST share the keys: the same key and request through GraphQL is the same task.
    const graphqlReply = await fetch(`${service.url}/graphql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gina}` },
      body: (() => {
        const data = new FormData();
        data.append('operations', JSON.stringify({
          query: 'mutation ($image: File!) { createTask(input: {jobDefinition: IMAGE_RESIZE, image: $image, resize: {width: 100}, idempotencyKey: "a3f1c2"}) { __typename ... on Task { id } } }',
          variables: { image: null },
        }));
        data.append('map', JSON.stringify({ 0: ['variables.image'] }));
        data.append('0', image(), 'photo.jpg');
        return data;
      })(),
    });
    expect(await graphqlReply.json()).toEqual({ data: { createTask: { __typename: 'Task', id: first.body.id } } });
  });

  it('422 IdempotencyKeyReused with the taskId for a different request under the same key', async () => {
    const hugo = await infra.createKey('hugo');
    const first = await post('order-7', hugo);
    const different: Record<string, string | Blob>[] = [{ width: '101' }, { format: 'webp' }, { image: image(Buffer.concat([jpeg, Buffer.from([0])])) }];
    for (const fields of different) {
      const reply = await post('order-7', hugo, fields);
      expect(reply.status).toBe(422);
      expect(reply.body).toEqual({
        error: 'IdempotencyKeyReused',
        message: `this idempotency key was used for a different request within the last 24 hours (task ${first.body.id}); send a new key with a new request`,
        taskId: first.body.id,
      });
    }
    expect(await tasksOf('hugo')).toBe(1);
  });

  it('scopes keys per API key name: two tenants with the same key get two tasks', async () => {
    const [ines, jon] = await Promise.all([infra.createKey('ines'), infra.createKey('jon')]);
    const a = await post('same', ines);
    const b = await post('same', jon);
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(a.body.id).not.toBe(b.body.id);
  });

  it('400 InvalidInput naming Idempotency-Key for an empty, too long or malformed key, storing nothing', async () => {
    const kim = await infra.createKey('kim');
    const blobs = (await infra.blobKeys()).length;
    for (const [header, message] of [
      ['', 'Idempotency-Key must be 1 to 255 characters long, got 0'],
      ['""', 'Idempotency-Key must be 1 to 255 characters long, got 0'],
      ['k'.repeat(256), 'Idempotency-Key must be 1 to 255 characters long, got 256'],
      ['"unterminated', 'Idempotency-Key must be a bare value or a quoted string ("…")'],
    ]) {
      const reply = await post(header, kim);
      expect(reply.status, header).toBe(400);
      expect(reply.body).toEqual({ error: 'InvalidInput', field: 'Idempotency-Key', message });
    }
    expect(await tasksOf('kim')).toBe(0);
    expect((await infra.blobKeys()).length).toBe(blobs);
    expect((await post('k'.repeat(255), kim)).status).toBe(201);
  });

  it('answers a repeated request also when the quota is full (the repeat makes no task)', async () => {
    const lena = await infra.createKey('lena');
    for (let i = 0; i < QUOTA - 1; i++) await create({}, lena);
    const last = await post('the-last-one', lena);
    expect(last.status).toBe(201);
    expect((await post(null, lena)).status).toBe(429);
    const again = await post('the-last-one', lena);
    expect({ status: again.status, body: again.body }).toEqual({ status: 201, body: last.body });
  });
});

describe('the OpenAPI document, against the service', () => {
  // Runs last (files run their tests in order): every response the document promises was
  // produced above, and (by `call`) every response produced was documented.
  it('documents exactly the responses the service gave', () => {
    const documented = new Set<string>();
    for (const [template, item] of Object.entries<Record<string, { responses?: Record<string, unknown> }>>(doc.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        for (const status of Object.keys(operation.responses ?? {})) documented.add(`${method.toUpperCase()} ${template} ${status}`);
      }
    }
    expect([...exercised].sort()).toEqual([...documented].sort());
  });
});
