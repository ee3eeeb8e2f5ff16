// Load generator of benchmark (d), a child process of the benchmark so that its own CPU
// does not hide in the API's figures: thousands of light subscribers — raw SSE over
// node:http (an agent without limits) and raw `ws` sockets speaking graphql-transport-ws —
// each recording when an event arrives. Latency = receipt time − the task's updatedAt
// (set by the transaction that committed the change; same machine, same clock).
// Driven over IPC: open → waitFinal → report → close.
import http from 'node:http';
import WebSocket from 'ws';

type Kind = 'taskUpdated' | 'tasksUpdated';
type Transport = 'sse' | 'ws';

interface Subscriber {
  transport: Transport;
  kind: Kind;
  taskId: string | null;
  /** Task ids this subscriber saw in a final state. */
  finals: Set<string>;
  close(): void;
}

const FIELDS = 'id status version progress updatedAt';
const latencies: Record<Transport, { taskId: string; ms: number }[]> = { sse: [], ws: [] };
const subscribers: Subscriber[] = [];
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

function document(kind: Kind, taskId: string | null) {
  return kind === 'taskUpdated'
    ? { query: `subscription ($id: ID!) { taskUpdated(id: $id) { ${FIELDS} } }`, variables: { id: taskId } }
    : { query: `subscription { tasksUpdated { ${FIELDS} } }`, variables: {} };
}

type Payload = { data?: Record<Kind, { id: string; status: string; updatedAt: string }> };

function received(subscriber: Subscriber, now: number, body: Payload) {
  const task = body.data?.[subscriber.kind];
  if (!task) return;
  // The first event of taskUpdated is the state at subscription time (CREATED here), not a
  // change: its updatedAt is when the task was made. Only changes are timed.
  if (task.status !== 'CREATED') latencies[subscriber.transport].push({ taskId: task.id, ms: now - Date.parse(task.updatedAt) });
  if (task.status === 'DONE' || task.status === 'FAILED' || task.status === 'DELETED') subscriber.finals.add(task.id);
}

function openSse(url: string, key: string, kind: Kind, taskId: string | null): Promise<Subscriber> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(document(kind, taskId));
    const request = http.request(
      `${url}/graphql`,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${key}`, 'content-length': Buffer.byteLength(body) },
      },
      (response) => {
        if (response.statusCode !== 200) {
          reject(new Error(`SSE subscribe: HTTP ${response.statusCode}`));
          response.resume();
          return;
        }
        const subscriber: Subscriber = { transport: 'sse', kind, taskId, finals: new Set(), close: () => request.destroy() };
        let buffer = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          buffer += chunk;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const message = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (!message.startsWith('event: next')) continue;
            const data = message.indexOf('data: ');
            if (data >= 0) received(subscriber, Date.now(), JSON.parse(message.slice(data + 6)));
          }
        });
        response.on('error', () => {});
        resolve(subscriber);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

function openWs(url: string, key: string, kind: Kind, taskId: string | null): Promise<Subscriber> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', { perMessageDeflate: false });
    const subscriber: Subscriber = { transport: 'ws', kind, taskId, finals: new Set(), close: () => socket.terminate() };
    socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${key}` } })));
    socket.on('message', (raw) => {
      const now = Date.now();
      const text = raw.toString();
      if (text.includes('"type":"next"')) {
        received(subscriber, now, (JSON.parse(text) as { payload: Payload }).payload);
      } else if (text.includes('"connection_ack"')) {
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: document(kind, taskId) }));
        resolve(subscriber);
      } else if (text.includes('"type":"error"')) {
        reject(new Error(`WS subscribe error: ${text}`));
      }
    });
    socket.on('error', reject);
    socket.on('close', (code) => code !== 1000 && code !== 1005 && reject(new Error(`WS closed ${code}`)));
  });
}

async function openAll(message: { url: string; key: string; plan: { transport: Transport; kind: Kind; taskId: string | null }[] }) {
  let next = 0;
  const errors: string[] = [];
  // 100 handshakes at a time: enough to go fast, few enough not to overflow accept queues.
  await Promise.all(
    Array.from({ length: 100 }, async () => {
      while (next < message.plan.length) {
        const { transport, kind, taskId } = message.plan[next++];
        try {
          subscribers.push(await (transport === 'sse' ? openSse : openWs)(message.url, message.key, kind, taskId));
        } catch (error) {
          errors.push((error as Error).message);
        }
      }
    }),
  );
  return { opened: subscribers.length, errors: errors.slice(0, 5), errorCount: errors.length };
}

/** Subscribers that should see `taskId` end but have not (yet). */
function missingFinal(taskId: string) {
  return subscribers.filter((s) => (s.kind === 'tasksUpdated' || s.taskId === taskId) && !s.finals.has(taskId)).length;
}

async function waitFinal(taskId: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (missingFinal(taskId) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return { missing: missingFinal(taskId) };
}

function summary(values: number[]) {
  const sorted = values.sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? null;
  return { n: sorted.length, p50: at(50), p90: at(90), p99: at(99), max: sorted.at(-1) ?? null };
}

function report(measured: string[]) {
  const ids = new Set(measured);
  const result: Record<string, unknown> = {};
  for (const transport of ['sse', 'ws'] as const) {
    result[transport] = summary(latencies[transport].filter((entry) => ids.has(entry.taskId)).map((entry) => entry.ms));
  }
  const all = [...latencies.sse, ...latencies.ws].filter((entry) => ids.has(entry.taskId)).map((entry) => entry.ms);
  result.all = summary(all);
  result.droppedFinals = measured.reduce((sum, id) => sum + missingFinal(id), 0);
  result.expectedFinals = measured.reduce((sum, id) => sum + subscribers.filter((s) => s.kind === 'tasksUpdated' || s.taskId === id).length, 0);
  return result;
}

process.on('message', async (message: any) => {
  let reply: unknown;
  if (message.type === 'open') reply = await openAll(message);
  else if (message.type === 'waitFinal') reply = await waitFinal(message.taskId, message.timeoutMs);
  else if (message.type === 'report') reply = report(message.measured);
  else if (message.type === 'close') {
    for (const subscriber of subscribers) subscriber.close();
    process.send!({ type: 'closed' }, () => process.exit(0));
    return;
  }
  process.send!({ type: `${message.type}-done`, ...(reply as object) });
});
process.on('disconnect', () => process.exit(0));
