// Baseline of benchmark (b), NOT part of the product: the synchronous design the REST
// article starts from. POST /tasks resizes the uploaded image inside the HTTP request
// and answers when it is done; GET /tasks/<id> is the cheap query (from memory, the best
// case for this design). Prints "listening <port>".
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import sharp from 'sharp';

sharp.cache(false);
const tasks = new Map<string, { id: string; status: string; width: number; height: number; bytes: number }>();

const server = createServer((request, response) => {
  const url = new URL(request.url ?? '/', 'http://x');
  if (request.method === 'POST' && url.pathname === '/tasks') {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', async () => {
      try {
        const width = Number(url.searchParams.get('width') ?? 720);
        const format = (url.searchParams.get('format') ?? 'jpeg') as 'jpeg' | 'webp';
        const quality = Number(url.searchParams.get('quality') ?? 80);
        const { data, info } = await sharp(Buffer.concat(chunks)).rotate().resize({ width }).toFormat(format, { quality }).toBuffer({ resolveWithObject: true });
        const task = { id: randomUUID(), status: 'DONE', width: info.width, height: info.height, bytes: data.byteLength };
        tasks.set(task.id, task);
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(task));
      } catch (error) {
        response.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: (error as Error).message }));
      }
    });
    return;
  }
  const match = /^\/tasks\/([\w-]+)$/.exec(url.pathname);
  if (request.method === 'GET' && match) {
    const task = tasks.get(match[1]);
    response.writeHead(task ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(task ?? { error: 'no such task' }));
    return;
  }
  response.writeHead(404).end();
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening ${typeof address === 'object' && address ? address.port : 0}`);
});
process.on('SIGTERM', () => process.exit(0));
