// Multipart bodies (GraphQL multipart requests, the REST facade's form), streamed: the file
// part is handed on while it arrives, never held whole. The one home of multipart parsing.
//
// - A MultipartForm reads the (counted, request-body.ts) body through busboy and yields its
//   parts in order: text fields as strings, the file as a StreamedUpload whose stream()
//   reads the live part. Backpressure reaches the client: while nobody reads the file, the
//   body is not read either.
// - The file's stream ends only once the whole body has been read and parsed: whatever
//   goes wrong after the file's last byte (a second file, the body over its limit, a
//   malformed end, a client gone) still fails the upload, so its blob is never kept.
// - Limits: one file of at most MAX_UPLOAD_BYTES, fields of at most MAX_REQUEST_BYTES, 16
//   fields. Over them: `refusal` (PAYLOAD_TOO_LARGE 413, or BAD_REQUEST 400), reading stops.
// - GraphQL (multipartRequests): `operations` and `map` must come before the file, as the
//   GraphQL multipart request specification says; the request is executed as soon as the
//   file part starts, its File variable being the StreamedUpload.
import { PassThrough, Readable } from 'node:stream';
import busboy, { type Busboy, type FileInfo } from 'busboy';
import type { GraphQLError } from 'graphql';
import type { GraphQLParams, Plugin } from 'graphql-yoga';
import type { Upload } from '../tasks/images.ts';
import { badRequest, bodyRefusal, isAbort, ONE_FILE, payloadTooLarge, REQUEST, theLimit, UPLOAD } from './request-body.ts';

const MAX_FIELDS = 16;

export const isMultipart = (request: Request) => /^multipart\/form-data/i.test(request.headers.get('content-type') ?? '');

export type FormPart = { name: string; value: string; upload?: undefined } | { name: string; upload: StreamedUpload; value?: undefined };

/** The file part of a multipart body, read from the request as it arrives; stream() once. */
export class StreamedUpload implements Upload {
  /** Unknown until the part has been read: a multipart part carries no length. */
  readonly size = undefined;
  readonly filename: string | undefined;
  readonly type: string;
  private state: 'waiting' | 'open' | 'discarded' = 'waiting';

  constructor(
    readonly name: string,
    info: FileInfo,
    private readonly part: Readable,
    private readonly form: MultipartForm,
  ) {
    this.filename = info.filename;
    this.type = info.mimeType;
    part.on('error', () => {}); // the form says why (done, refusal)
  }

  /** The file's bytes; ends once the whole body was read, errors with the refusal if it was refused. */
  stream(): Readable {
    if (this.state !== 'waiting') {
      return new Readable({
        read() {
          this.destroy(badRequest('a file part can be read only once'));
        },
      });
    }
    this.state = 'open';
    const out = new PassThrough();
    this.part.pipe(out, { end: false });
    this.form.done.then(
      () => !out.destroyed && out.end(),
      (error: unknown) => out.destroy(error as Error),
    );
    // A reader that stops early (the image was refused on its head): the rest is skipped.
    out.once('close', () => !out.writableFinished && this.discard());
    return out;
  }

  /** Skips the part's bytes (unread, or no longer wanted), so the rest of the body is read. */
  discard(): void {
    if (this.state === 'discarded') return;
    this.state = 'discarded';
    this.part.unpipe();
    this.part.resume();
  }

  get opened(): boolean {
    return this.state !== 'waiting';
  }
}

export class MultipartForm {
  /** Settles once the whole body was read and parsed, or rejects with `refusal`. */
  readonly done: Promise<void>;
  /** Why the body was refused, as the client is to be told; null while it was not. */
  refusal: GraphQLError | null = null;
  private readonly parser: Busboy | null = null;
  private readonly parts: FormPart[] = [];
  private readonly uploads: StreamedUpload[] = [];
  private wake: (() => void) | null = null;
  private finished = false;
  private stopped = false;
  private discarding = false;
  private settle!: { resolve: () => void; reject: (error: GraphQLError) => void };

  constructor(private readonly request: Request) {
    this.done = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.done.catch(() => {}); // observed through the uploads and next()
    let parser: Busboy;
    try {
      parser = busboy({
        headers: { 'content-type': request.headers.get('content-type') ?? '' },
        limits: { files: 1, fileSize: UPLOAD.bytes, fieldSize: REQUEST.bytes, fields: MAX_FIELDS, parts: MAX_FIELDS + 1 },
        defParamCharset: 'utf8',
      });
    } catch (error) {
      this.fail(badRequest(`the multipart body cannot be parsed: ${(error as Error).message}`));
      return;
    }
    this.parser = parser;
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) this.fail(payloadTooLarge(`a form field of the request is over ${theLimit(REQUEST)}`));
      else if (info.nameTruncated) this.fail(badRequest('a form field name is over 100 bytes'));
      else this.push({ name, value });
    });
    parser.on('file', (name, part, info) => {
      if (this.discarding) return void part.resume();
      part.once('limit', () => this.fail(payloadTooLarge(`the file is over ${theLimit(UPLOAD)}`)));
      const upload = new StreamedUpload(name, info, part, this);
      this.uploads.push(upload);
      this.push({ name, upload });
    });
    parser.on('filesLimit', () => this.fail(payloadTooLarge(ONE_FILE)));
    const tooManyFields = () => this.fail(badRequest(`a multipart request may carry at most ${MAX_FIELDS} fields`));
    parser.on('fieldsLimit', tooManyFields);
    parser.on('partsLimit', tooManyFields);
    parser.on('error', (error: Error) => this.fail(badRequest(`the multipart body is malformed (${error.message})`)));
    parser.on('finish', () => {
      if (this.stopped) return;
      this.finished = true;
      this.settle.resolve();
      this.wakeUp();
    });
    if (request.body) void this.pump(request.body as unknown as AsyncIterable<Uint8Array>);
    else parser.end();
  }

  /** The next part, in the body's order; null after the last. Throws the refusal. */
  async next(): Promise<FormPart | null> {
    for (;;) {
      const part = this.parts.shift();
      if (part) return part;
      if (this.refusal) throw this.refusal;
      if (this.finished) return null;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /**
   * Reads what is left of the body and drops it (a file nobody read): the client gets its
   * answer, and the connection stays usable. The counted body still stops at its limit.
   */
  discardRest(): void {
    if (this.discarding || this.stopped) return;
    this.discarding = true;
    for (const upload of this.uploads) upload.discard();
    this.parts.length = 0;
  }

  private push(part: FormPart) {
    if (this.discarding) return part.upload?.discard();
    this.parts.push(part);
    this.wakeUp();
  }

  private wakeUp() {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** Feeds the body to the parser, as fast as the parser (so the file's reader) takes it. */
  private async pump(body: AsyncIterable<Uint8Array>) {
    const parser = this.parser!;
    // Not for-await: leaving that loop early would cancel the body, and with it the
    // connection the answer still has to go out on.
    const chunks = body[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await chunks.next();
        if (this.stopped) return;
        if (next.done) break;
        if (!parser.write(next.value)) await this.drained(parser);
        if (this.stopped) return;
      }
      parser.end();
    } catch (error) {
      const limit = bodyRefusal(this.request);
      this.fail(
        limit
          ? payloadTooLarge(limit)
          : badRequest(isAbort(error) || (error as NodeJS.ErrnoException)?.code === 'ECONNRESET' ? 'the client went away before the body ended' : 'the request body could not be read to its end'),
      );
    }
  }

  private drained(parser: Busboy): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        parser.off('drain', done);
        parser.off('close', done);
        resolve();
      };
      parser.on('drain', done);
      parser.on('close', done);
    });
  }

  /** Refuses the body: reading stops (the rest stays unread), every reader gets `error`. */
  private fail(error: GraphQLError) {
    if (this.finished || this.stopped) return;
    this.stopped = true;
    this.refusal = error;
    this.parser?.destroy();
    this.settle.reject(error);
    this.wakeUp();
  }
}

// ---- GraphQL multipart requests ----

/** The form of each multipart GraphQL request, for its result (refusal, the unread rest). */
const forms = new WeakMap<Request, MultipartForm>();

function jsonField(name: string, value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    throw badRequest(`Multipart form field "${name}" must be a valid JSON string`);
  }
}

function mapField(value: string): Record<string, string[]> {
  const map = jsonField('map', value);
  const valid =
    typeof map === 'object' && map !== null && !Array.isArray(map) &&
    Object.values(map).every((paths) => Array.isArray(paths) && paths.every((path) => typeof path === 'string'));
  if (!valid) throw badRequest('Multipart form field "map" must map each file to a list of paths, e.g. {"0":["variables.image"]}');
  return map as Record<string, string[]>;
}

/** Sets `value` at a dotted path of the operations ("variables.input.image"), creating objects on the way. */
function setPath(target: unknown, path: string, value: unknown) {
  const keys = path.split('.');
  let current = target as Record<string, unknown>;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    if (key === '__proto__' || key === 'constructor' || key === 'prototype') return;
    if (i === keys.length - 1) {
      current[key] = value;
      return;
    }
    if (typeof current[key] !== 'object' || current[key] === null || !Object.hasOwn(current, key)) current[key] = {};
    current = current[key] as Record<string, unknown>;
  }
}

const FILES_LAST = 'the file parts of a multipart request come after "operations" and "map" (GraphQL multipart request specification)';

/** The GraphQL parameters of a multipart request, as soon as its file part starts (or its body ends). */
async function parseGraphqlMultipart(request: Request): Promise<GraphQLParams> {
  const form = new MultipartForm(request);
  forms.set(request, form);
  let operations: unknown;
  let map: Record<string, string[]> | undefined;
  const values = new Map<string, string>();
  let file: { name: string; upload: StreamedUpload } | undefined;
  for (let part = await form.next(); part; part = await form.next()) {
    if (part.upload) {
      if (part.name === 'operations' || part.name === 'map') throw badRequest(`Multipart form field "${part.name}" must be a string`);
      if (operations === undefined || map === undefined) throw badRequest(FILES_LAST);
      if (!Object.hasOwn(map, part.name)) {
        part.upload.discard(); // a file no variable takes
        continue;
      }
      file = { name: part.name, upload: part.upload };
      break;
    }
    if (part.name === 'operations') operations = jsonField('operations', part.value);
    else if (part.name === 'map') map = mapField(part.value);
    else values.set(part.name, part.value);
  }
  if (operations === undefined) throw badRequest('Missing multipart form field "operations"');
  if (typeof operations !== 'object' || operations === null) throw badRequest('Multipart form field "operations" must be a JSON object');
  // A key whose part is a text field gets the text (the File scalar refuses it); a key
  // without a part gets null, as in yoga's own parser.
  for (const [key, paths] of Object.entries(map ?? {})) {
    const value = key === file?.name ? file.upload : (values.get(key) ?? null);
    for (const path of paths) setPath(operations, path, value);
  }
  return operations as GraphQLParams;
}

/**
 * Multipart GraphQL requests, streamed (yoga's own parser is off: it reads the whole body
 * into a FormData first). Must come before requestBody() among the plugins, which maps
 * the parser's refusals. A body refused after execution started (over its limit while the
 * file streamed, a second file) answers with that refusal alone, like one refused earlier.
 */
export function multipartRequests(): Plugin {
  return {
    onRequestParse({ request, setRequestParser }) {
      if (request.method === 'POST' && isMultipart(request)) setRequestParser(parseGraphqlMultipart);
    },
    onResultProcess({ request, setResult }) {
      const form = forms.get(request);
      if (!form) return;
      if (form.refusal) setResult({ errors: [form.refusal] });
      else form.discardRest();
    },
  };
}
