// The OpenAPI 3.1 description of the REST facade (src/http/rest.ts), served at
// /api/openapi.json. test/rest.e2e.test.ts validates every real response against it and
// checks that every response documented here is produced by the service.
import { MAX_CALLBACK_URL_LENGTH } from '../callbacks/address-policy.ts';
import { IMAGE_FORMATS, MAX_DIMENSION, RESIZE_FITS } from '../jobs/image-resize.ts';
import { TASK_STATUSES } from '../tasks/lifecycle.ts';
import { UPLOAD_CONTENT_TYPES } from '../tasks/uploads.ts';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const errorBody = (names: string[], description: string) => ({
  description,
  content: {
    'application/json': {
      schema: {
        allOf: [ref('Error'), { properties: { error: names.length === 1 ? { const: names[0] } : { enum: names } } }],
      },
    },
  },
});
const taskIdParameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'The task id (a UUID)',
  schema: { type: 'string' },
};
const rateLimited = {
  ...errorBody(['RateLimited'], "The key's request rate limit (RATE_LIMIT_PER_MINUTE) is reached; `retryAfter` (and the Retry-After header) says when to try again"),
  headers: { 'Retry-After': { description: 'Seconds to wait', schema: { type: 'string' } } },
};
const common = {
  '400': errorBody(['WrongTaskIdFormat'], 'The id is not a UUID'),
  '401': errorBody(['Unauthenticated'], 'No valid API key'),
  '404': errorBody(['TaskDoesNotExist'], 'No task with this id belongs to the caller'),
  '429': rateLimited,
};
/**
 * Links (OpenAPI 3.1 §4.8.20): from a response holding a task's `id`, the operations that
 * take it, so that stateful API testers and generated clients can walk the lifecycle. The
 * id is read from the body; after a create, `Location` is the same task's path.
 */
const link = (operationId: string, description: string) => ({
  operationId,
  parameters: { id: '$response.body#/id' },
  description,
});
const taskLinks = {
  GetTaskStatus: link('getTaskStatus', 'Follow the status and progress of this task (GET /api/tasks/{id}/status)'),
  GetTask: link('getTask', 'Fetch this task (GET /api/tasks/{id}, the Location of a create)'),
  RunTask: link('runTask', 'Run this task: CREATED → QUEUED (POST /api/tasks/{id}/run)'),
  DeleteTask: link('deleteTask', 'Delete this task (DELETE /api/tasks/{id})'),
};
const afterRun = { GetTaskStatus: taskLinks.GetTaskStatus, GetTask: taskLinks.GetTask, DeleteTask: taskLinks.DeleteTask };

const dateTime = { type: 'string', format: 'date-time' };

/** The fields of POST /api/tasks; a file (`image`) only in a multipart body. */
const taskForm = (withFile: boolean) => ({
  type: 'object',
  required: ['jobDefinition'],
  properties: {
    jobDefinition: { type: 'string', enum: ['IMAGE_RESIZE'] },
    ...(withFile
      ? { image: { type: 'string', contentMediaType: 'application/octet-stream', description: 'JPEG, PNG, WebP, AVIF, GIF or TIFF; or give uploadId' } }
      : {}),
    uploadId: { type: 'string', format: 'uuid', description: 'An upload (POST /api/uploads) whose bytes were PUT' },
    width: { type: 'integer', minimum: 1, maximum: MAX_DIMENSION, description: 'At least one of width and height' },
    height: { type: 'integer', minimum: 1, maximum: MAX_DIMENSION },
    fit: { type: 'string', enum: RESIZE_FITS.map((f) => f.toLowerCase()), default: 'cover', description: 'Case-insensitive' },
    format: { type: 'string', enum: IMAGE_FORMATS.map((f) => f.toLowerCase()), description: "Case-insensitive; default: the source's format" },
    quality: { type: 'integer', minimum: 1, maximum: 100 },
    withoutEnlargement: { type: 'boolean', default: false },
    callbackUrl: {
      type: 'string',
      format: 'uri',
      maxLength: MAX_CALLBACK_URL_LENGTH,
      description:
        'http(s) URL POSTed (signed, Standard Webhooks) when the task ends: DONE, FAILED, DELETED. ' +
        'No credentials; must resolve to public addresses (unless WEBHOOK_ALLOW_PRIVATE_NETWORKS)',
    },
  },
});

const uploadForm = {
  type: 'object',
  required: ['contentType', 'byteSize'],
  properties: {
    contentType: { type: 'string', enum: [...UPLOAD_CONTENT_TYPES], description: 'Case-insensitive' },
    byteSize: { type: 'integer', minimum: 1, description: 'The exact size of the image, at most MAX_UPLOAD_BYTES' },
  },
};
const nullable = (schema: Record<string, unknown>) => ({ oneOf: [schema, { type: 'null' }] });

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Tasklane REST API',
    version: '1.0.0',
    description:
      'The original REST design over the same task service as the GraphQL API at /graphql. ' +
      'Create a task (multipart upload, or an upload made with POST /api/uploads), run it, follow its status, fetch it, delete it. ' +
      'Every error body is `{ "error": <name>, "message": <text> }`.',
  },
  servers: [{ url: '/' }],
  security: [{ apiKey: [] }],
  paths: {
    '/api/tasks': {
      post: {
        operationId: 'createTask',
        summary: 'Create an image-resize task (CREATED; run it with POST /api/tasks/{id}/run)',
        description: 'Exactly one of `image` (a file part: multipart only) and `uploadId` (an upload made with POST /api/uploads whose bytes were PUT).',
        parameters: [
          {
            name: 'Idempotency-Key',
            in: 'header',
            required: false,
            description:
              'Makes a retry safe (IETF httpapi Idempotency-Key draft): 1 to 255 characters, bare (`abc`) or a quoted string (`"abc"`). ' +
              "The same key of the same API key within 24 h answers with the first answer's status and body (201, the same task, " +
              'plus `Idempotent-Replayed: true`) and never makes a second task, even for requests sent at the same time; ' +
              'the same key with a different request (job, resize fields or image bytes) is 422 IdempotencyKeyReused naming that task. ' +
              'Only a created task is remembered: a refused request (400, 413, 429) can be retried with its key.',
            schema: { type: 'string', minLength: 1, maxLength: 255 },
          },
        ],
        requestBody: {
          required: true,
          content: {
            'multipart/form-data': { schema: taskForm(true) },
            'application/x-www-form-urlencoded': { schema: taskForm(false) },
          },
        },
        responses: {
          '201': {
            description: 'Created (or, for a repeated Idempotency-Key, created by the first request)',
            headers: {
              Location: { description: 'The new task: /api/tasks/{id}', schema: { type: 'string' } },
              'Idempotent-Replayed': { description: '`true` when this is the answer of an earlier request with the same Idempotency-Key', schema: { type: 'string', const: 'true' } },
            },
            content: { 'application/json': { schema: ref('Created') } },
            links: taskLinks,
          },
          '400': errorBody(
            ['WrongJobDefinitionValue', 'InvalidInput', 'InvalidImage'],
            'Unknown jobDefinition, a resize field or the Idempotency-Key header out of range, an unusable uploadId or a refused callbackUrl (`field` names it), or not a supported image',
          ),
          '401': common['401'],
          '413': errorBody(['PayloadTooLarge'], 'The body is over MAX_UPLOAD_BYTES'),
          '422': {
            description: 'The Idempotency-Key was used within 24 h for a different request; `taskId` is the task it made',
            content: {
              'application/json': {
                schema: { allOf: [ref('Error'), { required: ['taskId'], properties: { error: { const: 'IdempotencyKeyReused' } } }] },
              },
            },
          },
          '429': {
            ...errorBody(['TooManyTasks', 'RateLimited'], "The key's quota of active tasks (MAX_ACTIVE_TASKS_PER_KEY) is full, or its request rate limit (RATE_LIMIT_PER_MINUTE) is reached"),
            headers: rateLimited.headers,
          },
        },
      },
    },
    '/api/uploads': {
      post: {
        operationId: 'createUpload',
        summary: 'Step one of an upload without multipart: PUT the bytes to `url` with `headers`, then POST /api/tasks with uploadId',
        requestBody: {
          required: true,
          content: {
            'application/x-www-form-urlencoded': { schema: uploadForm },
            'multipart/form-data': { schema: uploadForm },
          },
        },
        responses: {
          '201': { description: 'Created', content: { 'application/json': { schema: ref('PendingUpload') } } },
          '400': errorBody(['InvalidInput'], 'A content type that is not a supported raster image, or a size out of range (`field` names it)'),
          '401': common['401'],
          '429': {
            ...errorBody(['TooManyTasks', 'RateLimited'], "The key's unused uploads (MAX_PENDING_UPLOADS_PER_KEY) are at the limit, or its request rate limit (RATE_LIMIT_PER_MINUTE) is reached"),
            headers: rateLimited.headers,
          },
        },
      },
    },
    '/api/tasks/{id}': {
      parameters: [taskIdParameter],
      get: {
        operationId: 'getTask',
        summary: 'The task',
        responses: {
          '200': { description: 'The task', content: { 'application/json': { schema: ref('Task') } } },
          ...common,
        },
      },
      delete: {
        operationId: 'deleteTask',
        summary: 'Soft delete: status DELETED, images removed (a queued or running job is cancelled). Idempotent.',
        responses: {
          '200': { description: 'Deleted', content: { 'application/json': { schema: ref('Deleted') } } },
          ...common,
        },
      },
    },
    '/api/tasks/{id}/run': {
      parameters: [taskIdParameter],
      post: {
        operationId: 'runTask',
        summary: 'CREATED → QUEUED',
        responses: {
          '202': { description: 'Queued; the task as it is now', content: { 'application/json': { schema: ref('Task') } }, links: afterRun },
          ...common,
          '409': errorBody(['InvalidTaskState'], 'The task is not CREATED (`status` says what it is)'),
        },
      },
    },
    '/api/tasks/{id}/status': {
      parameters: [taskIdParameter],
      get: {
        operationId: 'getTaskStatus',
        summary: 'Status and progress only',
        responses: {
          '200': { description: 'Status', content: { 'application/json': { schema: ref('Status') } } },
          ...common,
        },
      },
    },
  },
  components: {
    securitySchemes: {
      apiKey: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <key> (npm run key -- create <name>)' },
    },
    schemas: {
      TaskId: { type: 'string', format: 'uuid' },
      TaskStatus: { type: 'string', enum: [...TASK_STATUSES] },
      Error: {
        type: 'object',
        required: ['error', 'message'],
        properties: {
          error: { type: 'string', description: 'The error name' },
          message: { type: 'string' },
          field: { type: ['string', 'null'], description: 'InvalidInput: the form field at fault' },
          status: { $ref: '#/components/schemas/TaskStatus', description: 'InvalidTaskState: the task status' },
          limit: { type: 'integer', description: 'TooManyTasks: the quota' },
          retryAfter: { type: 'integer', minimum: 1, description: 'RateLimited: seconds to wait' },
          taskId: { $ref: '#/components/schemas/TaskId', description: 'IdempotencyKeyReused: the task the key made' },
        },
      },
      PendingUpload: {
        type: 'object',
        required: ['id', 'url', 'method', 'headers', 'maxBytes', 'expiresAt'],
        additionalProperties: false,
        properties: {
          id: { type: 'string', format: 'uuid', description: 'The uploadId for POST /api/tasks' },
          url: { type: 'string', description: "Where to PUT the bytes: a path on this API (disk store) or the store's own URL (s3)" },
          method: { const: 'PUT' },
          headers: {
            type: 'array',
            description: 'Send these with the PUT, as they are',
            items: {
              type: 'object',
              required: ['name', 'value'],
              additionalProperties: false,
              properties: { name: { type: 'string' }, value: { type: 'string' } },
            },
          },
          maxBytes: { type: 'integer', minimum: 1, description: 'The body must be exactly this many bytes (the declared byteSize)' },
          expiresAt: { ...dateTime, description: 'Until then the PUT and the create are possible (UPLOAD_TTL_MS)' },
        },
      },
      Created: {
        type: 'object',
        required: ['id'],
        additionalProperties: false,
        properties: { id: ref('TaskId') },
      },
      Status: {
        type: 'object',
        required: ['id', 'status', 'progress'],
        additionalProperties: false,
        properties: { id: ref('TaskId'), status: ref('TaskStatus'), progress: { type: 'number', minimum: 0, maximum: 1 } },
      },
      Deleted: {
        type: 'object',
        required: ['id', 'status'],
        additionalProperties: false,
        properties: { id: ref('TaskId'), status: { const: 'DELETED' } },
      },
      ResizeParams: {
        type: 'object',
        required: ['width', 'height', 'fit', 'format', 'quality', 'withoutEnlargement'],
        properties: {
          width: { type: ['integer', 'null'] },
          height: { type: ['integer', 'null'] },
          fit: { type: 'string', enum: [...RESIZE_FITS] },
          format: { type: 'string', enum: [...IMAGE_FORMATS] },
          quality: { type: ['integer', 'null'] },
          withoutEnlargement: { type: 'boolean' },
        },
      },
      Task: {
        type: 'object',
        additionalProperties: false,
        required: [
          'id', 'status', 'jobDefinition', 'resize', 'resultOfJob', 'resultUrl', 'error', 'progress',
          'attempts', 'version', 'createdAt', 'updatedAt', 'startedAt', 'finishedAt', 'callbackUrl',
        ],
        properties: {
          id: ref('TaskId'),
          status: ref('TaskStatus'),
          jobDefinition: { type: 'string', enum: ['IMAGE_RESIZE'] },
          resize: ref('ResizeParams'),
          resultOfJob: { description: 'The result image id, when DONE (kept after the image was removed: /images/<id> then answers 410)', ...nullable(ref('TaskId')) },
          resultUrl: {
            description: 'Signed, expiring URL (absolute path) of the result bytes, when DONE; works without headers; null once the images were removed (RESULT_TTL_MS after the task ended)',
            ...nullable({ type: 'string', pattern: '^/images/' }),
          },
          error: { description: 'Why it FAILED', ...nullable({ type: 'string' }) },
          progress: { type: 'number', minimum: 0, maximum: 1 },
          attempts: { type: 'integer', minimum: 0 },
          version: { type: 'integer', minimum: 1 },
          createdAt: dateTime,
          updatedAt: dateTime,
          startedAt: nullable(dateTime),
          finishedAt: nullable(dateTime),
          callbackUrl: { description: 'Where the task\'s callbacks go', ...nullable({ type: 'string' }) },
        },
      },
    },
  },
} as const;
