// The REST facade under /api: the original REST design's routes and status codes over the
// same task service the GraphQL resolvers call. Handlers only parse the request, call the
// service and map its result or typed error to a status code; no lifecycle logic here.
import { GraphQLError } from 'graphql';
import { signedImageUrl } from '../image-urls.ts';
import type { ImageFormat, ResizeFit, ResizeInput } from '../jobs/image-resize.ts';
import { log } from '../log.ts';
import type { JobDefinition } from '../generated/prisma/enums.ts';
import {
  IdempotencyKeyReused,
  InvalidInput,
  InvalidTaskState,
  TooManyTasks,
} from '../tasks/errors.ts';
import { checkIdempotencyKey } from '../tasks/idempotency.ts';
import { removeBlobs } from '../tasks/images.ts';
import type { Caller } from '../tasks/keys.ts';
import { classifyDomainError, classifyUnavailable, headerCaller, problem, UNAUTHENTICATED_MESSAGE } from './edge.ts';
import type { StoredImage } from '../tasks/store.ts';
import { isMultipart, MultipartForm, type StreamedUpload } from './multipart.ts';
import { badRequest, bodyRefusal, PAYLOAD_TOO_LARGE, payloadTooLarge } from './request-body.ts';
import * as tasks from '../tasks/service.ts';
import * as uploads from '../tasks/uploads.ts';
import type { TaskRow } from '../tasks/service.ts';
import { openApiDocument } from './openapi.ts';

export const REST_PREFIX = '/api';

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

/** The REST representation of a task (see the `Task` schema in openapi.ts). */
export function restTask(task: TaskRow) {
  const done = task.status === 'DONE' && task.resultImageId !== null;
  return {
    id: task.id,
    status: task.status,
    jobDefinition: task.jobDefinition,
    resize: task.params,
    resultOfJob: done ? task.resultImageId : null,
    resultUrl: done && !task.imagesExpiredAt ? signedImageUrl(task.resultImageId!) : null,
    error: task.error,
    progress: task.progress,
    attempts: task.attempts,
    version: task.version,
    createdAt: task.createdAt.toISOString(),
    updatedAt: task.updatedAt.toISOString(),
    startedAt: task.startedAt?.toISOString() ?? null,
    finishedAt: task.finishedAt?.toISOString() ?? null,
    callbackUrl: task.callbackUrl,
  };
}

/** The extra members of a domain error's problem body. */
function problemDetails(error: unknown): Record<string, unknown> {
  if (error instanceof InvalidTaskState) return { status: error.status };
  if (error instanceof TooManyTasks) return { limit: error.limit };
  if (error instanceof IdempotencyKeyReused) return { taskId: error.taskId };
  return {};
}

/** A typed domain error → its status code and body (edge.ts' table); anything else is a masked 500. */
function errorResponse(error: unknown, taskId?: string): Response {
  if (error instanceof GraphQLError) {
    // A body refused while it was read (request-body.ts, multipart.ts): over its limit, a
    // second file, malformed or cut off.
    if (error.extensions.code === PAYLOAD_TOO_LARGE) return problem(413, 'PayloadTooLarge', error.message);
    return problem(400, 'InvalidInput', error.message, { field: null });
  }
  const domain = classifyDomainError(error);
  if (domain) {
    if (error instanceof InvalidInput) {
      if (error.field === 'jobDefinition') return problem(400, 'WrongJobDefinitionValue', error.message);
      // The service names resize fields "resize.width"; REST sends them as top-level form fields.
      return problem(domain.status, domain.problem, error.message, { field: error.field?.replace(/^resize\./, '') ?? null });
    }
    return problem(domain.status, domain.problem, (error as Error).message, problemDetails(error));
  }
  const unavailable = classifyUnavailable(error);
  // (REST's database 503 has never sent Retry-After; the store's does.)
  if (unavailable) {
    return problem(unavailable.status, unavailable.problem, unavailable.message, {},
      unavailable.code === 'STORAGE_UNAVAILABLE' ? { 'retry-after': String(unavailable.retryAfter) } : {});
  }
  log.error({ err: error, ...(taskId ? { taskId } : {}) }, 'unexpected error in the REST API');
  return problem(500, 'InternalError', 'Unexpected error.');
}

// ---- parsing the forms of POST /api/tasks and /api/uploads (edge validation only) ----

/** The text fields of a form (the first of each name) and the names that came as files. */
interface FormFields {
  values: Map<string, string>;
  files: Set<string>;
}

function field(form: FormFields, name: string): string | null {
  if (form.files.has(name)) throw new InvalidInput(`${name} must be a plain form field, not a file`, name);
  const value = form.values.get(name);
  if (value === undefined) return null;
  return value.trim() === '' ? null : value.trim();
}

/**
 * The one reading of every integer form field: decimal digits only, exactly as sent — no
 * sign, spaces, leading zeros, fraction, exponent or hex (`" 10"`, `10.0`, `1e2`, `0x10` are
 * refused, naming the field), at most 9 digits so that the number is exact. An empty field
 * is an absent one (an HTML form sends its empty inputs). The range is the service's to check.
 */
const INTEGER = /^(0|[1-9][0-9]{0,8})$/;

function integerField(form: FormFields, name: string): number | null {
  if (form.files.has(name)) throw new InvalidInput(`${name} must be a plain form field, not a file`, name);
  const value = form.values.get(name);
  if (value === undefined || value === '') return null;
  if (!INTEGER.test(value)) throw new InvalidInput(`${name} must be a whole number written in decimal digits only, got ${JSON.stringify(value.slice(0, 32))}`, name);
  return Number(value);
}

function booleanField(form: FormFields, name: string): boolean | null {
  const value = field(form, name)?.toLowerCase() ?? null;
  if (value === null) return null;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new InvalidInput(`${name} must be true or false, got "${value.slice(0, 32)}"`, name);
}

/** Upper-cased, so `webp` and `WEBP` both work; the service checks the value. */
function enumField(form: FormFields, name: string): string | null {
  const value = field(form, name)?.toUpperCase() ?? null;
  return value === 'JPG' ? 'JPEG' : value;
}

export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';

/**
 * The Idempotency-Key header: a Structured Field string as the IETF httpapi draft has it
 * (`"…"`, with \" and \\ escapes), or a bare value taken as it is (as most clients send
 * it; `abc` and `"abc"` are the same key). Null when absent.
 */
function idempotencyKeyOf(headers: Headers): string | null {
  const raw = headers.get(IDEMPOTENCY_KEY_HEADER);
  if (raw === null) return null;
  let key = raw.trim();
  if (key.startsWith('"')) {
    const quoted = /^"((?:[^"\\]|\\["\\])*)"$/.exec(key);
    if (!quoted) throw new InvalidInput(`${IDEMPOTENCY_KEY_HEADER} must be a bare value or a quoted string ("…")`, IDEMPOTENCY_KEY_HEADER);
    key = quoted[1].replace(/\\(["\\])/g, '$1');
  }
  return checkIdempotencyKey(key, IDEMPOTENCY_KEY_HEADER);
}

/** A promise that never resolves and rejects as `promise` does: to race a read against a failed store. */
function failureOf(promise: Promise<unknown>): Promise<never> {
  const failure = new Promise<never>((_, reject) => promise.catch(reject));
  failure.catch(() => {}); // also observed where it is awaited
  return failure;
}

/**
 * The fields of a POST: multipart/form-data (the only way to send a file) or, without a
 * file, application/x-www-form-urlencoded. A multipart body is read as it arrives
 * (multipart.ts): its `image` file part goes to `onImage` while it streams in, with the
 * fields that came before it; any other file part is skipped, its name kept in `files`. A
 * refused body throws its GraphQLError (errorResponse maps it: 413, 400).
 */
async function readForm(request: Request, fields: string, onImage?: (image: StreamedUpload, before: FormFields) => Promise<unknown>): Promise<FormFields> {
  const form: FormFields = { values: new Map(), files: new Set() };
  if (/^application\/x-www-form-urlencoded/i.test(request.headers.get('content-type') ?? '')) {
    let text: string;
    try {
      text = await request.text();
    } catch {
      const limit = bodyRefusal(request);
      throw limit ? payloadTooLarge(limit) : badRequest('the form could not be read');
    }
    for (const [name, value] of new URLSearchParams(text)) if (!form.values.has(name)) form.values.set(name, value);
    return form;
  }
  if (!isMultipart(request)) throw new InvalidInput(`send multipart/form-data or application/x-www-form-urlencoded (fields ${fields})`, null);
  const body = new MultipartForm(request);
  let failed: Promise<never> | null = null;
  const next = () => {
    const part = body.next();
    if (!failed) return part;
    part.catch(() => {}); // lost the race to a failed image: a refusal, if any, is in body.refusal
    return Promise.race([part, failed]);
  };
  try {
    for (let part = await next(); part; part = await next()) {
      if (!part.upload) {
        if (!form.values.has(part.name)) form.values.set(part.name, part.value);
      } else if (onImage && part.name === 'image' && !failed) {
        failed = failureOf(onImage(part.upload, form));
      } else {
        form.files.add(part.name);
        part.upload.discard();
      }
    }
    return form;
  } catch (error) {
    throw body.refusal ?? error;
  } finally {
    if (!body.refusal) body.discardRest(); // the answer may go before the body was read
  }
}

/** What the fields of a task say (their form only: the service checks the values). */
function taskFields(form: FormFields) {
  const resize: ResizeInput = {
    width: integerField(form, 'width'),
    height: integerField(form, 'height'),
    fit: enumField(form, 'fit') as ResizeFit | null,
    format: enumField(form, 'format') as ImageFormat | null,
    quality: integerField(form, 'quality'),
    withoutEnlargement: booleanField(form, 'withoutEnlargement'),
  };
  return {
    jobDefinition: (field(form, 'jobDefinition') ?? '') as JobDefinition,
    resize,
    uploadId: field(form, 'uploadId'),
    callbackUrl: field(form, 'callbackUrl'),
  };
}

/**
 * POST /api/tasks. The image streams into the store as it arrives, and the fields may come
 * before or after it (curl and HTML forms send them in either order): the fields before the
 * image are checked before it is stored, all of them once the body has been read, and the
 * stored image is removed if the task is refused.
 */
async function createTask(request: Request, caller: Caller): Promise<Response> {
  const idempotencyKey = idempotencyKeyOf(request.headers);
  let stored: Promise<StoredImage> | null = null;
  let handedOver = false;
  try {
    const form = await readForm(request, 'jobDefinition, image or uploadId, width, height, …', (image, before) => {
      taskFields(before); // what is wrong already is refused before a byte is stored
      return (stored = tasks.storeImage(image));
    });
    const fields = taskFields(form);
    if (form.values.has('image')) throw new InvalidInput('image must be a file part of the form', 'image');
    handedOver = true;
    const { task, replayed } = stored
      ? await tasks.createOrReplayTaskWithImage(caller, { ...fields, idempotencyKey, stored: await stored })
      : await tasks.createOrReplayTask(caller, { ...fields, idempotencyKey });
    // A repeated request (same Idempotency-Key) gets the first answer again: its status and body.
    return json(201, { id: task.id }, { location: `${REST_PREFIX}/tasks/${task.id}`, ...(replayed ? { 'idempotent-replayed': 'true' } : {}) });
  } catch (error) {
    const image = stored as Promise<StoredImage> | null;
    if (image && !handedOver) await image.then((source) => removeBlobs([source.storageKey]), () => {});
    throw error;
  }
}

/** POST /api/uploads: createUpload (contentType, byteSize) → 201 the pending upload. */
async function createUpload(request: Request, caller: Caller): Promise<Response> {
  const form = await readForm(request, 'contentType, byteSize');
  const byteSize = integerField(form, 'byteSize');
  if (byteSize === null) throw new InvalidInput('byteSize is required', 'byteSize');
  const upload = await uploads.createUpload(caller, { contentType: field(form, 'contentType') ?? '', byteSize });
  return json(201, { ...upload, expiresAt: upload.expiresAt.toISOString() });
}

const methodNotAllowed = (allow: string) =>
  problem(405, 'MethodNotAllowed', `use ${allow} on this path`, {}, { allow });

/** Handles every request under /api. */
export async function handleRest(request: Request, url: URL): Promise<Response> {
  const path = url.pathname.slice(REST_PREFIX.length).replace(/\/+$/, '');
  const method = request.method;
  if (path === '/openapi.json') {
    return method === 'GET' || method === 'HEAD' ? json(200, openApiDocument) : methodNotAllowed('GET');
  }
  const route = /^\/tasks(?:\/([^/]+)(\/status|\/run)?)?$/.exec(path);
  if (!route && path !== '/uploads') return problem(404, 'NotFound', `no such endpoint: ${url.pathname} (see ${REST_PREFIX}/openapi.json)`);
  const caller = await headerCaller(request);
  if (!caller) {
    return problem(401, 'Unauthenticated', UNAUTHENTICATED_MESSAGE, {}, { 'www-authenticate': 'Bearer' });
  }
  const [, rawId, action] = route ?? [];
  const id = rawId === undefined ? undefined : decodeURIComponent(rawId);
  try {
    if (path === '/uploads') {
      if (method !== 'POST') return methodNotAllowed('POST');
      return await createUpload(request, caller);
    }
    if (id === undefined) {
      if (method !== 'POST') return methodNotAllowed('POST');
      return await createTask(request, caller);
    }
    if (action === '/run') {
      if (method !== 'POST') return methodNotAllowed('POST');
      return json(202, restTask(await tasks.runTask(caller, id)));
    }
    if (action === '/status') {
      if (method !== 'GET') return methodNotAllowed('GET');
      const task = await tasks.getTask(caller, id);
      return json(200, { id: task.id, status: task.status, progress: task.progress });
    }
    if (method === 'GET') return json(200, restTask(await tasks.getTask(caller, id)));
    if (method === 'DELETE') {
      const task = await tasks.deleteTask(caller, id);
      return json(200, { id: task.id, status: task.status });
    }
    return methodNotAllowed('GET, DELETE');
  } catch (error) {
    return errorResponse(error, id);
  }
}
