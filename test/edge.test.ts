// The HTTP edge in-process (yoga.fetch, no server boot), against real PostgreSQL and Redis:
// request-size limits, list arguments, the shape, code and log level of every refusal, and
// the parsing of signed image URLs. test/security.e2e.test.ts makes the same attacks over
// the network against real processes where the network matters (a 16 MB body, /health).
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { photo } from './helpers/images.ts';
import type { TestInfra } from './helpers/infra.ts';
import { inProcess } from './helpers/in-process.ts';

let infra: TestInfra;
let key: string;
let yoga: typeof import('../src/http/yoga.ts').yoga;
let log: typeof import('../src/log.ts').log;
let maskError: typeof import('../src/http/errors.ts').maskError;
let listTasks: typeof import('../src/tasks/service.ts').listTasks;
let dispose: () => Promise<void>;

const MAX_REQUEST_BYTES = 64 * 1024;
/** Set here, so /metrics wants it; unset (the default), test/metrics.e2e.test.ts scrapes it open. */
const METRICS_TOKEN = 'metrics-token-of-the-edge-test';

beforeAll(async () => {
  ({ infra, dispose } = await inProcess('edge', {
    MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES),
    MAX_UPLOAD_BYTES: String(4 * 1024 * 1024),
    METRICS_TOKEN,
  }));
  ({ yoga } = await import('../src/http/yoga.ts'));
  ({ log } = await import('../src/log.ts'));
  ({ maskError } = await import('../src/http/errors.ts'));
  ({ listTasks } = await import('../src/tasks/service.ts'));
  key = await infra.createKey('edge');
});

afterAll(async () => {
  await dispose?.();
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

/**
 * The Accept of GraphQL over HTTP's own media type: a request error (parse, validation,
 * variables) is a 400 there; with application/json (or no Accept) the spec asks for 200.
 */
const GRAPHQL_RESPONSE = { accept: 'application/graphql-response+json' };

function post(body: unknown, headers: Record<string, string> = {}) {
  return yoga.fetch('http://edge/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth(), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** A GraphQL multipart request (operations, map, files) as a client library sends it. */
function multipart(operations: string, map: string, files: Record<string, Uint8Array> = {}, headers: Record<string, string> = {}) {
  const form = new FormData();
  form.append('operations', operations);
  form.append('map', map);
  for (const [name, bytes] of Object.entries(files)) form.append(name, new Blob([bytes as Uint8Array<ArrayBuffer>]), 'upload.bin');
  return yoga.fetch('http://edge/graphql', { method: 'POST', headers: { ...auth(), ...headers }, body: form });
}

const CREATE = `mutation ($input: CreateTaskInput!) {
  createTask(input: $input) { __typename ... on Task { id source { id url } } ... on Error { message } }
}`;

function createTask(bytes: Uint8Array) {
  const operations = { query: CREATE, variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: null, resize: { width: 8 } } } };
  return multipart(JSON.stringify(operations), JSON.stringify({ 0: ['variables.input.image'] }), { 0: bytes });
}

const LIST = 'query ($s: [TaskStatus!]) { tasks(status: $s) { edges { node { id status } } } }';

/** A body stream of `total` bytes that counts how much of it was read. */
function countingBody(head: string, total: number, tail: string) {
  const chunk = new Uint8Array(16 * 1024).fill(0x41); // 'A'
  let pulled = 0;
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      const piece = sent === 0 ? new TextEncoder().encode(head) : sent >= total ? new TextEncoder().encode(tail) : chunk;
      sent += piece.byteLength;
      pulled += piece.byteLength;
      controller.enqueue(piece);
      if (sent > total) controller.close();
    },
  });
  return { stream, pulled: () => pulled };
}

describe('request size and list arguments', () => {
  const refusedBody = (message: string) => ({ status: 413, body: { errors: [{ message, extensions: { code: 'PAYLOAD_TOO_LARGE' } }] } });

  it('refuses a 16 MB JSON body declared over MAX_REQUEST_BYTES before reading it', async () => {
    const total = 16 * 1024 * 1024;
    const body = countingBody('{"query":"query ($s: [TaskStatus!]) { tasks(status: $s) { edges { cursor } } }","variables":{"s":["', total, '"]}}');
    const started = performance.now();
    const response = await yoga.fetch('http://edge/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': String(total), ...auth() },
      body: body.stream,
      duplex: 'half',
    } as RequestInit);
    expect(await answer(response)).toEqual(
      refusedBody(`the request body is ${total} bytes, over the limit of ${MAX_REQUEST_BYTES} bytes (MAX_REQUEST_BYTES)`),
    );
    console.info(`[measure] 16 MB JSON body declared: 413 in-process in ${(performance.now() - started).toFixed(1)} ms`);
    expect(body.pulled()).toBeLessThan(MAX_REQUEST_BYTES);
  });

  it('counts a JSON body without Content-Length and refuses it as soon as it passes MAX_REQUEST_BYTES', async () => {
    const total = 16 * 1024 * 1024;
    const body = countingBody('{"query":"{ __typename }","variables":{"pad":"', total, '"}}');
    const response = await yoga.fetch('http://edge/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth() },
      body: body.stream,
      duplex: 'half',
    } as RequestInit);
    expect(await answer(response)).toEqual(refusedBody(`the request body is over the limit of ${MAX_REQUEST_BYTES} bytes (MAX_REQUEST_BYTES)`));
    expect(body.pulled()).toBeLessThan(MAX_REQUEST_BYTES + 64 * 1024); // the limit, plus what the stream had queued
  });

  it('holds the non-file fields of a multipart request (operations, map) to MAX_REQUEST_BYTES too', async () => {
    const statuses = Array.from({ length: MAX_REQUEST_BYTES / 6 }, () => 'DONE');
    const response = await multipart(JSON.stringify({ query: LIST, variables: { s: statuses } }), '{}');
    expect(await answer(response)).toEqual(
      refusedBody(`a form field of the request is over the limit of ${MAX_REQUEST_BYTES} bytes (MAX_REQUEST_BYTES)`),
    );
  });

  it('refuses a list argument of more than 100 items, as a variable or a literal, before coercing it (BAD_USER_INPUT)', async () => {
    // ~9,000 items fit in this test's MAX_REQUEST_BYTES (150,000 in the default 1 MiB).
    const statuses = Array.from({ length: 9000 }, () => 'DONE');
    const started = performance.now();
    const variable = await answer(await post({ query: LIST, variables: { s: statuses } }, GRAPHQL_RESPONSE));
    const ms = performance.now() - started;
    expect(variable).toEqual({
      status: 400,
      body: { errors: [{ message: '$s has 9000 items, more than the 100 a list may hold', extensions: { code: 'BAD_USER_INPUT' } }] },
    });
    console.info(`[measure] a 9,000-item status list refused in-process in ${ms.toFixed(1)} ms`);
    const literal = await answer(await post({ query: `{ tasks(status: [${Array(101).fill('DONE').join(' ')}]) { edges { cursor } } }` }, GRAPHQL_RESPONSE));
    expect(literal.status).toBe(400);
    expect(literal.body.errors).toMatchObject([
      { message: 'A list has 101 items, more than the 100 a list may hold', extensions: { code: 'BAD_USER_INPUT' } },
    ]);
    // The subscription's status filter too (over SSE: the refusal is the stream's only event).
    const sse = await yoga.fetch('http://edge/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...auth() },
      body: JSON.stringify({ query: 'subscription ($s: [TaskStatus!]) { tasksUpdated(status: $s) { id } }', variables: { s: Array(101).fill('DONE') } }),
    });
    expect(await sse.text()).toContain('"message":"$s has 101 items, more than the 100 a list may hold","extensions":{"code":"BAD_USER_INPUT"}');
  });

  it('accepts 100 repeats of one status, and the filter still filters', async () => {
    const created = await answer(await createTask(await photo(16, 16)));
    const id = (created.body.data!.createTask as { id: string }).id;
    const list = async (statuses: string[]) => (await answer(await post({ query: LIST, variables: { s: statuses } }))).body;
    expect(await list(Array(100).fill('DONE'))).toEqual({ data: { tasks: { edges: [] } } });
    expect(await list(Array(100).fill('CREATED'))).toEqual({ data: { tasks: { edges: [{ node: { id, status: 'CREATED' } }] } } });
  });

  it('deduplicates a status filter before SQL: 70,000 repeats are not 70,000 parameters', async () => {
    // Straight into the domain, past the API's list limit: PostgreSQL takes at most 65,535
    // parameters, so this failed (Prisma P2029) while each item was one.
    const caller = { owner: 'edge' } as Parameters<typeof listTasks>[0];
    const page = await listTasks(caller, { status: Array(70_000).fill('DONE') });
    expect(page.tasks).toEqual([]);
  });
});

describe('refusals: a code, a short message, nothing internal', () => {
  const badRequest = (message: string) => ({ status: 400, body: { errors: [{ message, extensions: { code: 'BAD_REQUEST' } }] } });

  it('multipart `operations` or `map` that is not JSON: 400 BAD_REQUEST', async () => {
    expect(await answer(await multipart('not json', '{}'))).toEqual(badRequest('Multipart form field "operations" must be a valid JSON string'));
    const operations = JSON.stringify({ query: '{ __typename }' });
    expect(await answer(await multipart(operations, 'not json'))).toEqual(badRequest('Multipart form field "map" must be a valid JSON string'));
  });

  it('GET with variables that are not JSON: 400 BAD_REQUEST, not an unexpected error', async () => {
    const response = await yoga.fetch(`http://edge/graphql?query=${encodeURIComponent(LIST)}&variables=%7Bnope`, { headers: auth() });
    expect(await answer(response)).toEqual(badRequest('a JSON parameter of the request (variables or extensions) does not parse'));
  });

  it('a file mapped onto a variable that is not a File: BAD_USER_INPUT with a short message', async () => {
    const operations = JSON.stringify({ query: 'query ($id: ID!) { task(id: $id) { __typename } }', variables: { id: null } });
    const response = await answer(await multipart(operations, JSON.stringify({ 0: ['variables.id'] }), { 0: new Uint8Array(64) }, GRAPHQL_RESPONSE));
    expect(response).toEqual({
      status: 400,
      body: { errors: [{ message: '$id is a ID: a file may only be given for a File', extensions: { code: 'BAD_USER_INPUT' } }] },
    });
    // Deeper in an input object, and onto a list's item.
    const input = JSON.stringify({ query: CREATE, variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: null, resize: { width: null } } } });
    const deep = await answer(await multipart(input, JSON.stringify({ 0: ['variables.input.resize.width'] }), { 0: new Uint8Array(64) }));
    expect(deep.body.errors).toEqual([{ message: '$input.resize.width is a Int: a file may only be given for a File', extensions: { code: 'BAD_USER_INPUT' } }]);
    const list = JSON.stringify({ query: LIST, variables: { s: ['DONE', null] } });
    const item = await answer(await multipart(list, JSON.stringify({ 0: ['variables.s.1'] }), { 0: new Uint8Array(64) }));
    expect(item.body.errors).toEqual([{ message: '$s[1] is a TaskStatus: a file may only be given for a File', extensions: { code: 'BAD_USER_INPUT' } }]);
  });

  it('a File variable given something other than a file part: BAD_USER_INPUT, never reaching the resolver', async () => {
    const response = await answer(
      await post({ query: CREATE, variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: 'aGVsbG8=', resize: { width: 8 } } } }, GRAPHQL_RESPONSE),
    );
    expect(response).toEqual({
      status: 400,
      body: {
        errors: [
          {
            message:
              'Variable "$input" got invalid value "aGVsbG8=" at "input.image"; File takes a file part of a multipart request (GraphQL multipart request specification)',
            locations: [{ line: 1, column: 11 }],
            extensions: { code: 'BAD_USER_INPUT' },
          },
        ],
      },
    });
  });

  it('a variable that does not coerce gets BAD_USER_INPUT and is logged at debug, not as an unexpected error', async () => {
    const error = vi.spyOn(log, 'error');
    const debug = vi.spyOn(log, 'debug');
    try {
      const response = await answer(await post({ query: LIST, variables: { s: ['DOEN'] } }, GRAPHQL_RESPONSE));
      expect(response.status).toBe(400);
      expect(response.body.errors).toMatchObject([{ message: expect.stringMatching(/^Variable "\$s" got invalid value "DOEN"/), extensions: { code: 'BAD_USER_INPUT' } }]);
      expect(await answer(await post({ query: '{ tasks(first: 500) { edges { cursor } } }' }))).toMatchObject({
        body: { errors: [{ message: 'first must be from 0 to 100', extensions: { code: 'BAD_USER_INPUT' } }] },
      });
      expect(error).not.toHaveBeenCalled();
      expect(debug).toHaveBeenCalledWith(expect.objectContaining({ code: 'BAD_USER_INPUT' }), 'request refused');
      // A real fault still is an error, masked for the client.
      const masked = maskError(new Error('connection to the moon lost'), 'Unexpected error.');
      expect(masked.message).toBe('Unexpected error.');
      expect(error).toHaveBeenCalledWith({ err: expect.objectContaining({ message: 'connection to the moon lost' }) }, 'unexpected error');
    } finally {
      error.mockRestore();
      debug.mockRestore();
    }
  });

  it('a refusal quoting a long value is cut short', async () => {
    const response = await answer(await post({ query: LIST, variables: { s: ['X'.repeat(50_000)] } }));
    expect(response.body.errors).toMatchObject([{ message: expect.stringMatching(/^Variable "\$s" got invalid value "XXX/), extensions: { code: 'BAD_USER_INPUT' } }]);
    expect(response.body.errors![0].message.length).toBeLessThanOrEqual(501);
  });

  it('an SVG behind a fake AVIF header is InvalidImage with one short line, none of libvips', async () => {
    const box = Buffer.alloc(24);
    box.writeUInt32BE(24, 0);
    box.write('ftypavifmif1miaf', 4);
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
    const response = await answer(await createTask(Buffer.concat([box, svg])));
    expect(response.body.data?.createTask).toEqual({ __typename: 'InvalidImage', message: 'unreadable AVIF image: corrupt image header' });
  });
});

describe('multipart requests, streamed', () => {
  const BOUNDARY = 'edge-boundary';
  const textPart = (name: string, value: string) => `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const filePart = (name: string) => `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`;
  const operations = JSON.stringify({ query: CREATE, variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: null, resize: { width: 8 } } } });
  const MAP = JSON.stringify({ 0: ['variables.input.image'] });

  /** A multipart body the test writes piece by piece, and may leave open. */
  function openBody() {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
    const response = yoga.fetch('http://edge/graphql', {
      method: 'POST',
      headers: { ...auth(), 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    return {
      response,
      write: (piece: string | Uint8Array) => controller.enqueue(typeof piece === 'string' ? new TextEncoder().encode(piece) : piece),
      end: () => controller.close(),
    };
  }

  const send = async (...pieces: (string | Uint8Array)[]) => {
    const body = openBody();
    for (const piece of pieces) body.write(piece);
    body.end();
    return answer(await body.response);
  };

  it('runs the mutation while the file still streams in: bytes that are no image are refused from their head, the body still open', async () => {
    const before = await infra.blobKeys();
    const body = openBody();
    body.write(textPart('operations', operations) + textPart('map', MAP) + filePart('0'));
    body.write(new Uint8Array(512 * 1024).fill(0x41)); // more than the checked head; the body never ends
    // A parser that waited for the end of the body would never answer.
    expect(await answer(await body.response)).toMatchObject({ status: 200, body: { data: { createTask: { __typename: 'InvalidImage' } } } });
    body.end();
    expect(await infra.blobKeys()).toEqual(before);
  });

  it('a text part where the map expects the file: BAD_USER_INPUT, never reaching the resolver', async () => {
    const response = await send(textPart('operations', operations), textPart('map', MAP), textPart('0', 'aGVsbG8='), `--${BOUNDARY}--\r\n`);
    expect(response.body.errors).toEqual([
      expect.objectContaining({
        message: 'Variable "$input" got invalid value "aGVsbG8=" at "input.image"; File takes a file part of a multipart request (GraphQL multipart request specification)',
        extensions: { code: 'BAD_USER_INPUT' },
      }),
    ]);
  });

  it('a mapped file that never comes: a typed refusal (the image is null: none given)', async () => {
    const response = await send(textPart('operations', operations), textPart('map', MAP), `--${BOUNDARY}--\r\n`);
    expect(response.body).toEqual({
      data: { createTask: { __typename: 'InvalidInput', message: 'give the image: a file (image) or a finished upload (uploadId)' } },
    });
  });

  it('a file before "map", or a map that is not a map of lists: 400 BAD_REQUEST', async () => {
    const early = await send(textPart('operations', operations), filePart('0'), 'x\r\n', textPart('map', MAP), `--${BOUNDARY}--\r\n`);
    expect(early).toEqual({
      status: 400,
      body: { errors: [{ message: 'the file parts of a multipart request come after "operations" and "map" (GraphQL multipart request specification)', extensions: { code: 'BAD_REQUEST' } }] },
    });
    const notLists = await send(textPart('operations', operations), textPart('map', '{"0":"variables.input.image"}'), `--${BOUNDARY}--\r\n`);
    expect(notLists.status).toBe(400);
    expect(notLists.body.errors).toMatchObject([{ extensions: { code: 'BAD_REQUEST' } }]);
  });

  it('a body cut off after its file: 400 BAD_REQUEST, the image not kept', async () => {
    const before = await infra.blobKeys();
    const response = await send(textPart('operations', operations), textPart('map', MAP), filePart('0'), await photo(16, 16)); // no closing boundary
    expect(response).toMatchObject({ status: 400, body: { errors: [{ extensions: { code: 'BAD_REQUEST' } }] } });
    expect(response.body).not.toHaveProperty('data');
    expect(await infra.blobKeys()).toEqual(before);
  });
});

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

describe('/metrics with METRICS_TOKEN set', () => {
  const scrape = (headers: Record<string, string> = {}) => yoga.fetch('http://edge/metrics', { headers });

  it('refuses a scrape without the token, or with another one, with 401 and WWW-Authenticate: Bearer', async () => {
    for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: `Bearer ${METRICS_TOKEN}x` }, auth(), { authorization: METRICS_TOKEN }]) {
      const response = await scrape(headers);
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toBe('Bearer');
      expect(await response.text()).not.toContain('tasklane_');
    }
  });

  it('answers the scrape that sends it', async () => {
    const response = await scrape({ authorization: `Bearer ${METRICS_TOKEN}` });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('tasklane_tasks');
  });
});

describe("the schema's error shapes (inline snapshots: a change to a rule or a message shows here first)", () => {
  const query = async (text: string, variables: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
    (await answer(await post({ query: text, variables }, headers))).body;

  it('task(id): WrongTaskIdFormat, TaskDoesNotExist', async () => {
    const fields = '__typename ... on Error { message }';
    expect(await query(`{ a: task(id: "nope") { ${fields} } b: task(id: "00000000-0000-4000-8000-000000000000") { ${fields} } }`)).toMatchInlineSnapshot(`
      {
        "data": {
          "a": {
            "__typename": "WrongTaskIdFormat",
            "message": ""nope" is not a task id (a UUID)",
          },
          "b": {
            "__typename": "TaskDoesNotExist",
            "message": "task 00000000-0000-4000-8000-000000000000 does not exist",
          },
        },
      }
    `);
  });

  it('runTask on a deleted task: InvalidTaskState with its status', async () => {
    const created = (await answer(await createTask(await photo(32, 32)))).body.data!.createTask as { id: string };
    await query(`mutation ($id: ID!) { deleteTask(id: $id) { __typename } }`, { id: created.id });
    const body = await query(`mutation ($id: ID!) { runTask(id: $id) { __typename ... on Error { message } ... on InvalidTaskState { status } } }`, { id: created.id });
    expect(JSON.parse(JSON.stringify(body).replaceAll(created.id, '<id>'))).toMatchInlineSnapshot(`
      {
        "data": {
          "runTask": {
            "__typename": "InvalidTaskState",
            "message": "cannot run a task that is DELETED",
            "status": "DELETED",
          },
        },
      }
    `);
  });

  it('createUpload and createTask: InvalidInput naming its field', async () => {
    const fields = '__typename ... on Error { message } ... on InvalidInput { field }';
    const uploads = `a: createUpload(input: {contentType: "text/html", byteSize: 10}) { ${fields} } b: createUpload(input: {contentType: "image/png", byteSize: 0}) { ${fields} }`;
    const tasks = `c: createTask(input: {jobDefinition: IMAGE_RESIZE, uploadId: "00000000-0000-4000-8000-000000000000", resize: {width: 10}}) { ${fields} } d: createTask(input: {jobDefinition: IMAGE_RESIZE, resize: {width: 10}}) { ${fields} }`;
    expect(await query(`mutation { ${uploads} ${tasks} }`)).toMatchInlineSnapshot(`
      {
        "data": {
          "a": {
            "__typename": "InvalidInput",
            "field": "contentType",
            "message": "contentType must be one of image/jpeg, image/png, image/webp, image/avif, image/gif, image/tiff, got "text/html"",
          },
          "b": {
            "__typename": "InvalidInput",
            "field": "byteSize",
            "message": "byteSize must be from 1 to 4194304 (MAX_UPLOAD_BYTES), got 0",
          },
          "c": {
            "__typename": "InvalidInput",
            "field": "uploadId",
            "message": "upload 00000000-0000-4000-8000-000000000000 does not exist",
          },
          "d": {
            "__typename": "InvalidInput",
            "field": "image",
            "message": "give the image: a file (image) or a finished upload (uploadId)",
          },
        },
      }
    `);
  });

  it('no key, and a bad key: UNAUTHENTICATED outside the unions', async () => {
    const noKey = await answer(await yoga.fetch('http://edge/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ __typename }' }) }));
    const badKey = await answer(await post({ query: '{ __typename }' }, { authorization: 'Bearer tl_not_a_key' }));
    expect(badKey).toEqual(noKey); // the same answer for both
    expect(noKey).toMatchInlineSnapshot(`
      {
        "body": {
          "errors": [
            {
              "extensions": {
                "code": "UNAUTHENTICATED",
              },
              "message": "a valid API key is required: send Authorization: Bearer <key>",
            },
          ],
        },
        "status": 401,
      }
    `);
  });
});
