// createUpload: the first step of an upload without multipart (src/tasks/uploads.ts). The
// client PUTs the bytes to `url` with `headers`, then calls createTask(input: {uploadId}).
import { InvalidInput, TooManyTasks } from '../tasks/errors.ts';
import { createUpload, type PendingUpload } from '../tasks/uploads.ts';
import { builder } from './builder.ts';

const HttpHeaderRef = builder.objectRef<{ name: string; value: string }>('HttpHeader').implement({
  fields: (t) => ({ name: t.exposeString('name'), value: t.exposeString('value') }),
});

const PendingUploadRef = builder.objectRef<PendingUpload>('PendingUpload').implement({
  description: 'Where to PUT the bytes of an upload; then createTask(input: {uploadId: id, …})',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The uploadId for createTask' }),
    url: t.exposeString('url', {
      description: "An absolute path on this API (disk store) or the store's own URL (s3): resolve it against the API's URL",
    }),
    method: t.exposeString('method', { description: 'PUT' }),
    headers: t.field({ type: [HttpHeaderRef], description: 'Send these with the PUT, as they are', resolve: (upload) => upload.headers }),
    maxBytes: t.exposeInt('maxBytes', { description: 'The body must be exactly this many bytes (the declared byteSize)' }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime', description: 'Until then the PUT and createTask are possible; then the upload is removed' }),
  }),
});

const CreateUploadInput = builder.inputType('CreateUploadInput', {
  fields: (t) => ({
    contentType: t.string({ required: true, description: 'image/jpeg, image/png, image/webp, image/avif, image/gif or image/tiff' }),
    byteSize: t.int({ required: true, description: 'The exact size of the image, 1..MAX_UPLOAD_BYTES' }),
  }),
});

builder.mutationFields((t) => ({
  createUpload: t.field({
    type: PendingUploadRef,
    description: 'Step one of an upload without multipart: PUT the bytes to the returned url, then createTask with uploadId',
    args: { input: t.arg({ type: CreateUploadInput, required: true }) },
    errors: { types: [InvalidInput, TooManyTasks], union: { name: 'CreateUploadResult' } },
    resolve: (_, { input }, { caller }) => createUpload(caller, input),
  }),
}));
