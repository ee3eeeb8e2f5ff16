// Baseline of benchmark (a)'s "API CPU per upload", NOT part of the product: the least an
// HTTP server can do with the same multipart upload and still keep it safely — busboy
// parses the body, the file part is written to a temp file (one write per 512 KiB),
// fsync'd and renamed into a directory. No GraphQL, no key, no image check, no database,
// no queue. Answers as createTask does, so the same client drives both. Prints "listening <port>".
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import { createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import busboy from 'busboy';

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklane-upload-baseline-'));
await fs.mkdir(path.join(dir, 'images'));

async function store(file: NodeJS.ReadableStream): Promise<void> {
  const temp = path.join(dir, randomUUID());
  const handle = await fs.open(temp, 'wx');
  try {
    let batch: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of file as AsyncIterable<Buffer>) {
      batch.push(chunk);
      bytes += chunk.length;
      if (bytes >= 512 * 1024) {
        await handle.writev(batch);
        batch = [];
        bytes = 0;
      }
    }
    if (bytes) await handle.writev(batch);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temp, path.join(dir, 'images', path.basename(temp)));
}

const server = createServer((request, response) => {
  const parser = busboy({ headers: request.headers });
  let stored: Promise<void> | null = null;
  parser.on('file', (_name, file) => {
    stored = store(file);
  });
  parser.on('close', async () => {
    try {
      await stored;
      const body = { data: { createTask: { __typename: 'Task', id: randomUUID(), status: 'QUEUED' } } };
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    } catch (error) {
      response.writeHead(500).end((error as Error).message);
    }
  });
  request.pipe(parser);
});

const stop = async () => {
  server.close();
  await fs.rm(dir, { recursive: true, force: true });
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
server.listen(0, '127.0.0.1', () => console.log(`listening ${(server.address() as { port: number }).port}`));
