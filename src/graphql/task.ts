// The Task type with its images and audit trail, and the task queries and mutations.
import { signedImageUrl } from '../image-urls.ts';
import type { ResizeParams } from '../jobs/image-resize.ts';
import {
  IdempotencyKeyReused,
  InvalidImage,
  InvalidInput,
  InvalidTaskState,
  TaskDoesNotExist,
  TooManyTasks,
  WrongTaskIdFormat,
} from '../tasks/errors.ts';
import * as tasks from '../tasks/service.ts';
import type { TaskRow } from '../tasks/service.ts';
import { builder } from './builder.ts';
import type { CallbackAttempt } from './loaders.ts';
import { ImageFormatEnum, JobDefinitionEnum, ResizeFitEnum, TaskStatusEnum } from './enums.ts';
import { exposeDomainError } from './errors.ts';

type ImageMeta = NonNullable<Awaited<ReturnType<typeof tasks.getImageMeta>>>;

export const ImageRef = builder.objectRef<ImageMeta>('Image').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    format: t.field({ type: ImageFormatEnum, resolve: (image) => image.format }),
    width: t.exposeInt('width'),
    height: t.exposeInt('height'),
    byteSize: t.exposeInt('byteSize'),
    url: t.string({
      description: 'Signed, expiring URL of the bytes (absolute path); works in an <img src> without headers',
      resolve: (image) => signedImageUrl(image.id),
    }),
  }),
});

const ResizeParamsRef = builder.objectRef<ResizeParams>('ResizeParams').implement({
  fields: (t) => ({
    width: t.exposeInt('width', { nullable: true }),
    height: t.exposeInt('height', { nullable: true }),
    fit: t.field({ type: ResizeFitEnum, resolve: (params) => params.fit }),
    format: t.field({ type: ImageFormatEnum, nullable: true, resolve: (params) => params.format }),
    quality: t.exposeInt('quality', { nullable: true }),
    withoutEnlargement: t.exposeBoolean('withoutEnlargement'),
  }),
});

const TaskEventRef = builder
  .objectRef<{ at: Date; status: TaskRow['status']; message: string | null }>('TaskEvent')
  .implement({
    fields: (t) => ({
      at: t.expose('at', { type: 'DateTime' }),
      status: t.field({ type: TaskStatusEnum, resolve: (event) => event.status }),
      message: t.exposeString('message', { nullable: true }),
    }),
  });

const CallbackDeliveryRef = builder.objectRef<CallbackAttempt>('CallbackDelivery').implement({
  description: 'One attempt to deliver a callback (a signed POST to the task\'s callbackUrl)',
  fields: (t) => ({
    event: t.exposeString('event', { description: 'task.done, task.failed or task.deleted' }),
    attempt: t.exposeInt('attempt', { description: 'Attempts of this event so far (1 for the first); every attempt of one event has the same webhook-id' }),
    at: t.expose('at', { type: 'DateTime', description: 'When the attempt started' }),
    statusCode: t.exposeInt('statusCode', { nullable: true, description: "The receiver's HTTP status; a 2xx ends the delivery" }),
    error: t.exposeString('error', { nullable: true, description: 'Why there was no answer (timeout, refused connection, refused address, …)' }),
  }),
});

export const TaskRef = builder.objectRef<TaskRow>('Task').implement({
  isTypeOf: (value) => typeof value === 'object' && value !== null && 'jobDefinition' in value && 'ownerId' in value,
  fields: (t) => ({
    id: t.exposeID('id'),
    status: t.field({ type: TaskStatusEnum, resolve: (task) => task.status }),
    jobDefinition: t.field({ type: JobDefinitionEnum, resolve: (task) => task.jobDefinition }),
    resize: t.field({ type: ResizeParamsRef, resolve: (task) => task.params }),
    // Image metadata is cached per process, so whether the images are gone is the task's to say.
    source: t.field({
      type: ImageRef,
      nullable: true,
      description: 'The uploaded image; null after delete, and once removed RESULT_TTL_MS after the task ended',
      resolve: async (task, _, ctx) =>
        task.sourceImageId && !task.imagesExpiredAt ? ((await ctx.loaders.image(task.sourceImageId)) ?? null) : null,
    }),
    resultOfJob: t.id({
      nullable: true,
      description: 'UUID of the result image, when DONE (kept after the image was removed: /images/<id> then answers 410)',
      resolve: (task) => (task.status === 'DONE' ? task.resultImageId : null),
    }),
    result: t.field({
      type: ImageRef,
      nullable: true,
      description: 'The result image, when DONE; null once removed RESULT_TTL_MS after the task ended',
      resolve: async (task, _, ctx) =>
        task.status === 'DONE' && task.resultImageId && !task.imagesExpiredAt
          ? ((await ctx.loaders.image(task.resultImageId)) ?? null)
          : null,
    }),
    error: t.exposeString('error', { nullable: true, description: 'Why it FAILED' }),
    progress: t.exposeFloat('progress', { description: '0..1' }),
    attempts: t.exposeInt('attempts', { description: 'Deliveries to a worker so far' }),
    version: t.exposeInt('version', { description: 'Increases with every change' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    startedAt: t.expose('startedAt', { type: 'DateTime', nullable: true }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
    callbackUrl: t.exposeString('callbackUrl', { nullable: true, description: 'Where the task\'s callbacks go' }),
    callbacks: t.field({
      type: [CallbackDeliveryRef],
      description: 'Every attempt to deliver its callbacks, oldest first',
      resolve: (task, _, ctx) => (task.callbackUrl ? ctx.loaders.callbacks(task.id) : []),
    }),
    events: t.field({
      type: [TaskEventRef],
      description: 'Audit trail, oldest first',
      // Only the trail up to this state: a subscriber's re-read state may be older than the
      // trail read for it a moment later.
      resolve: async (task, _, ctx) => (await ctx.loaders.events(task.id, task.version)).filter((event) => event.version <= task.version),
    }),
  }),
});

const ResizeInput = builder.inputType('ResizeInput', {
  fields: (t) => ({
    width: t.int({ description: '1..16384; at least one of width/height' }),
    height: t.int({ description: '1..16384' }),
    fit: t.field({ type: ResizeFitEnum, defaultValue: 'COVER' }),
    format: t.field({ type: ImageFormatEnum, description: "Default: the source's format" }),
    quality: t.int({ description: '1..100' }),
    withoutEnlargement: t.boolean({ defaultValue: false }),
  }),
});

const CreateTaskInput = builder.inputType('CreateTaskInput', {
  fields: (t) => ({
    jobDefinition: t.field({ type: JobDefinitionEnum, required: true }),
    image: t.field({ type: 'File', description: 'The image, as a multipart file part; or give uploadId (exactly one of the two)' }),
    uploadId: t.id({ description: 'A two-step upload whose bytes were PUT (createUpload); or give image (exactly one of the two)' }),
    resize: t.field({ type: ResizeInput, required: true }),
    run: t.boolean({ defaultValue: false, description: 'Create and run in one call' }),
    callbackUrl: t.string({
      description: 'http(s) URL POSTed (signed, Standard Webhooks) when the task ends: DONE, FAILED, DELETED. Must resolve to a public address',
    }),
    idempotencyKey: t.string({
      description:
        '1..255 characters: the same key of the same API key within 24 h answers with the same task, ' +
        'never makes a second one (a retry after a lost answer is safe); the same key with a different request is IdempotencyKeyReused',
    }),
  }),
});

const TaskConnection = builder.connectionObject({ type: TaskRef, name: 'TaskConnection' }, { name: 'TaskEdge' });

builder.queryFields((t) => ({
  task: t.field({
    type: TaskRef,
    args: { id: t.arg.id({ required: true }) },
    errors: { types: [WrongTaskIdFormat, TaskDoesNotExist], union: { name: 'TaskResult' } },
    resolve: (_, { id }, { caller }) => tasks.getTask(caller, id),
  }),
  tasks: t.field({
    type: TaskConnection,
    description: `The caller's tasks, newest first; at most ${tasks.MAX_PAGE_SIZE} a page (default 20)`,
    args: {
      first: t.arg.int(),
      after: t.arg.string(),
      status: t.arg({ type: [TaskStatusEnum] }),
    },
    resolve: async (_, args, { caller }, info) => {
      let page;
      try {
        page = await tasks.listTasks(caller, args);
      } catch (error) {
        throw exposeDomainError(error, info.path ? [info.path.key] : undefined) ?? error;
      }
      const edges = page.tasks.map((task) => ({ cursor: task.id, node: task }));
      return {
        edges,
        pageInfo: {
          hasNextPage: page.hasNextPage,
          hasPreviousPage: Boolean(args.after),
          startCursor: edges[0]?.cursor ?? null,
          endCursor: edges.at(-1)?.cursor ?? null,
        },
      };
    },
  }),
}));

builder.mutationFields((t) => ({
  createTask: t.field({
    type: TaskRef,
    args: { input: t.arg({ type: CreateTaskInput, required: true }) },
    errors: { types: [InvalidInput, InvalidImage, TooManyTasks, IdempotencyKeyReused], union: { name: 'CreateTaskResult' } },
    resolve: async (_, { input }, { caller }) =>
      tasks.createTask(caller, {
        jobDefinition: input.jobDefinition,
        image: input.image,
        uploadId: input.uploadId,
        resize: input.resize,
        run: input.run,
        callbackUrl: input.callbackUrl,
        idempotencyKey: input.idempotencyKey,
      }),
  }),
  runTask: t.field({
    type: TaskRef,
    args: { id: t.arg.id({ required: true }) },
    errors: { types: [WrongTaskIdFormat, TaskDoesNotExist, InvalidTaskState], union: { name: 'RunTaskResult' } },
    resolve: (_, { id }, { caller }) => tasks.runTask(caller, id),
  }),
  deleteTask: t.field({
    type: TaskRef,
    description: 'Soft delete: status DELETED, images removed, row and audit trail kept',
    args: { id: t.arg.id({ required: true }) },
    errors: { types: [WrongTaskIdFormat, TaskDoesNotExist], union: { name: 'DeleteTaskResult' } },
    resolve: (_, { id }, { caller }) => tasks.deleteTask(caller, id),
  }),
}));
