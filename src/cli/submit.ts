// `npm run submit -- <file> --width 720 [--format webp] [--out result.webp]`: creates and
// runs a resize task, draws its progress from the taskUpdated subscription (SSE, no
// polling), and saves the result. A plain client of the public GraphQL API: it needs only
// TASKLANE_URL and TASKLANE_KEY, none of the server's configuration.
//
// The create is retried when its answer is lost (connection cut, the API restarting: 502,
// 503, 504), with the same idempotency key (one random UUID per invocation), so a retry
// never makes a second task: the service answers it with the task the first attempt made.
//
// Exit codes: 0 the task is DONE and saved; 1 the task FAILED (or was deleted);
// 2 bad usage or a request the service refused (bad input, image, key); 3 the service
// could not be reached or answered unexpectedly.
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

const USAGE = `usage: npm run submit -- <image> [--width N] [--height N] [--fit cover|contain|fill|inside|outside]
                           [--format jpeg|png|webp|avif|gif|tiff] [--quality 1-100]
                           [--without-enlargement] [--out FILE]
environment: TASKLANE_KEY (required), TASKLANE_URL (default http://localhost:4000)`;

class Exit extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const EXTENSIONS: Record<string, string> = { JPEG: 'jpg', PNG: 'png', WEBP: 'webp', AVIF: 'avif', GIF: 'gif', TIFF: 'tiff' };

interface TaskState {
  id: string;
  status: string;
  progress: number;
  error: string | null;
  result: { url: string; width: number; height: number; format: string; byteSize: number } | null;
}

const TASK_FIELDS = 'id status progress error result { url width height format byteSize }';

function parse(argv: string[]) {
  let parsed;
  try {
    parsed = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      width: { type: 'string' },
      height: { type: 'string' },
      fit: { type: 'string' },
      format: { type: 'string' },
      quality: { type: 'string' },
      'without-enlargement': { type: 'boolean' },
      out: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
    });
  } catch (error) {
    throw new Exit(2, `${(error as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) throw new Exit(0, USAGE);
  if (positionals.length !== 1) throw new Exit(2, `give exactly one image file\n${USAGE}`);
  const integer = (name: 'width' | 'height' | 'quality') => {
    const raw = values[name];
    if (raw === undefined) return null;
    if (!/^\d+$/.test(raw)) throw new Exit(2, `--${name} must be a whole number, got "${raw}"`);
    return Number(raw);
  };
  const upper = (raw: string | undefined) => (raw === undefined ? null : raw.toUpperCase() === 'JPG' ? 'JPEG' : raw.toUpperCase());
  // npm runs scripts in the package directory; INIT_CWD is where the user typed the command.
  const cwd = process.env.INIT_CWD ?? process.cwd();
  return {
    file: path.resolve(cwd, positionals[0]),
    out: values.out === undefined ? null : path.resolve(cwd, values.out),
    cwd,
    resize: {
      width: integer('width'),
      height: integer('height'),
      fit: upper(values.fit) ?? 'COVER',
      format: upper(values.format),
      quality: integer('quality'),
      withoutEnlargement: values['without-enlargement'] ?? false,
    },
  };
}

function settings() {
  const key = process.env.TASKLANE_KEY;
  if (!key) throw new Exit(2, 'set TASKLANE_KEY to your API key (npm run key -- create <name>)');
  const base = (process.env.TASKLANE_URL ?? 'http://localhost:4000').replace(/\/+$/, '');
  if (!/^https?:\/\//.test(base)) throw new Exit(2, `TASKLANE_URL must be an http(s) URL, got "${base}"`);
  return { key, base };
}

async function request(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (error) {
    throw new Exit(3, `cannot reach ${url}: ${(error as Error).cause ?? (error as Error).message}`);
  }
}

/** Tries of the create when its answer is lost, and the pause before each retry (doubling). */
const CREATE_TRIES = 5;
const FIRST_RETRY_MS = 500;

/** An answer worth asking again for, with the same idempotency key. */
class Transient extends Exit {
  constructor(message: string) {
    super(3, message);
  }
}

async function createTask(base: string, key: string, file: string, resize: object): Promise<TaskState> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (error) {
    throw new Exit(2, `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  // One key for every try of this invocation: whichever try reached the service made the task.
  const idempotencyKey = randomUUID();
  for (let attempt = 1, delay = FIRST_RETRY_MS; ; attempt++, delay *= 2) {
    try {
      return await createOnce(base, key, file, bytes, resize, idempotencyKey);
    } catch (error) {
      if (!(error instanceof Transient) || attempt >= CREATE_TRIES) throw error;
      process.stderr.write(`${error.message}; trying again in ${delay / 1000} s (idempotency key ${idempotencyKey})\n`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

async function createOnce(base: string, key: string, file: string, bytes: Buffer, resize: object, idempotencyKey: string): Promise<TaskState> {
  const operations = {
    query: `mutation Submit($image: File!, $resize: ResizeInput!, $idempotencyKey: String!) {
      createTask(input: { jobDefinition: IMAGE_RESIZE, image: $image, resize: $resize, run: true, idempotencyKey: $idempotencyKey }) {
        __typename ... on Task { ${TASK_FIELDS} } ... on Error { message } ... on InvalidInput { field }
      }
    }`,
    variables: { image: null, resize, idempotencyKey },
  };
  const form = new FormData();
  form.append('operations', JSON.stringify(operations));
  form.append('map', JSON.stringify({ 0: ['variables.image'] }));
  form.append('0', new Blob([bytes as Uint8Array<ArrayBuffer>]), path.basename(file));
  const url = `${base}/graphql`;
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
    text = await response.text(); // a connection cut before the whole answer arrived is worth a retry too
  } catch (error) {
    throw new Transient(`cannot reach ${url}: ${(error as Error).cause ?? (error as Error).message}`);
  }
  let body: {
    data?: { createTask: TaskState & { __typename: string; message?: string; field?: string } };
    errors?: { message: string; extensions?: { code?: string } }[];
  } | null = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: reported below
  }
  if (response.status === 502 || response.status === 503 || response.status === 504) {
    const error = body?.errors?.[0];
    throw new Transient(error ? `${error.extensions?.code ?? 'ERROR'}: ${error.message}` : `${url} answered HTTP ${response.status}`);
  }
  if (body?.errors?.length) {
    const [error] = body.errors;
    throw new Exit(response.status >= 500 ? 3 : 2, `${error.extensions?.code ?? 'ERROR'}: ${error.message}`);
  }
  const result = body?.data?.createTask;
  if (!result) throw new Exit(3, `unexpected answer from ${url} (HTTP ${response.status})`);
  if (result.__typename !== 'Task') {
    throw new Exit(2, `${result.__typename}: ${result.message}${result.field ? ` (${result.field})` : ''}`);
  }
  return result;
}

/** The task's states from taskUpdated over SSE: the current one first, then every change. */
async function* watch(base: string, key: string, id: string): AsyncGenerator<TaskState> {
  const response = await request(`${base}/graphql`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query: `subscription Watch($id: ID!) { taskUpdated(id: $id) { ${TASK_FIELDS} } }`, variables: { id } }),
  });
  if (!response.ok || !response.body) throw new Exit(3, `the subscription was refused (HTTP ${response.status})`);
  let buffer = '';
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    // SSE: events are separated by a blank line; `data:` lines carry the JSON.
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const type = /^event: ?(.*)$/m.exec(event)?.[1];
      const data = [...event.matchAll(/^data: ?(.*)$/gm)].map((m) => m[1]).join('\n');
      if (type === 'complete') return;
      if (!data) continue;
      const message = JSON.parse(data) as { data?: { taskUpdated: TaskState }; errors?: { message: string }[] };
      if (message.errors?.length) throw new Exit(3, `subscription error: ${message.errors[0].message}`);
      if (message.data?.taskUpdated) yield message.data.taskUpdated;
    }
  }
}

/** A progress bar on stderr: redrawn in place on a terminal, one line per change otherwise. */
function progressBar() {
  const tty = process.stderr.isTTY;
  let last = '';
  return {
    draw(task: TaskState) {
      const width = 30;
      const filled = Math.round(task.progress * width);
      const line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(task.progress * 100)).padStart(3)}% ${task.status}`;
      if (line === last) return;
      last = line;
      process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    },
    end() {
      if (tty && last) process.stderr.write('\n');
    },
  };
}

function defaultOut(file: string, cwd: string, format: string): string {
  const name = path.basename(file, path.extname(file));
  return path.join(cwd, `${name}.resized.${EXTENSIONS[format] ?? format.toLowerCase()}`);
}

async function main(): Promise<number> {
  const options = parse(process.argv.slice(2));
  const { key, base } = settings();
  const created = await createTask(base, key, options.file, options.resize);
  process.stderr.write(`task ${created.id} ${created.status}\n`);
  const bar = progressBar();
  let final: TaskState = created;
  // The subscription starts with the current state, so re-subscribing after a dropped
  // stream loses nothing; a few tries ride out a restarting API.
  const finished = () => ['DONE', 'FAILED', 'DELETED'].includes(final.status);
  for (let attempt = 1; !finished(); attempt++) {
    try {
      for await (const task of watch(base, key, created.id)) {
        final = task;
        bar.draw(task);
      }
    } catch (error) {
      if (attempt >= 5) throw error;
    }
    if (finished()) break;
    if (attempt >= 5) throw new Exit(3, 'the subscription kept ending before the task finished');
    await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
  }
  bar.end();
  if (final.status !== 'DONE' || !final.result) {
    process.stderr.write(`task ${final.id} ${final.status}${final.error ? `: ${final.error}` : ''}\n`);
    return 1;
  }
  const image = await request(new URL(final.result.url, `${base}/`).toString(), {});
  if (!image.ok) throw new Exit(3, `could not download the result (HTTP ${image.status})`);
  const bytes = Buffer.from(await image.arrayBuffer());
  const out = options.out ?? defaultOut(options.file, options.cwd, final.result.format);
  await writeFile(out, bytes);
  const { width, height, format } = final.result;
  process.stdout.write(`${out}\t${width}x${height} ${format} ${bytes.byteLength} bytes\ttask ${final.id}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    if (error instanceof Exit) {
      (error.code === 0 ? process.stdout : process.stderr).write(`${error.message}\n`);
      process.exit(error.code);
    }
    process.stderr.write(`unexpected error: ${(error as Error).stack ?? error}\n`);
    process.exit(3);
  },
);
