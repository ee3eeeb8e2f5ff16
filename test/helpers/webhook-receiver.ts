// A callback receiver the test owns, on 127.0.0.1: records every request, answers each path
// as the test says (a status, or hang: keep the request open), and can go down and come back
// on the same port.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface ReceivedRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
  /** The status answered; null while (or because) the request hangs. */
  status: number | null;
  /** Whether standardwebhooks' verify() accepted it on arrival (its timestamp tolerance is 5 minutes), with verifyWith's secret. */
  verification: 'valid' | string;
}

/** What to answer the `n`-th request (0-based) of a path. */
export type Behaviour = (n: number) => number | 'hang';

export interface Receiver {
  url(path: string): string;
  port: number;
  requests: ReceivedRequest[];
  /** The secret requests are verified with on arrival. */
  verifyWith(secret: string): void;
  /** How `path` answers from now on (default: 204). */
  on(path: string, behaviour: Behaviour): void;
  /** Requests of `path` still open (hanging). */
  open(path: string): number;
  /** Stops listening and cuts every connection (open requests included). */
  down(): Promise<void>;
  /** Listens again, on the same port. */
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const behaviours = new Map<string, Behaviour>();
  const counts = new Map<string, number>();
  const hanging = new Map<string, Set<http.ServerResponse>>();
  const sockets = new Set<Socket>();
  let secret: string | null = null;
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const path = request.url ?? '/';
      const n = counts.get(path) ?? 0;
      counts.set(path, n + 1);
      const answer = (behaviours.get(path) ?? (() => 204))(n);
      const record: ReceivedRequest = { path, headers: request.headers as Record<string, string>, body: Buffer.concat(chunks).toString(), status: null, verification: 'no secret' };
      try {
        if (secret) {
          verified(secret, record);
          record.verification = 'valid';
        }
      } catch (error) {
        record.verification = (error as Error).message;
      }
      requests.push(record);
      if (answer === 'hang') {
        const open = hanging.get(path) ?? new Set();
        open.add(response);
        hanging.set(path, open);
        response.on('close', () => open.delete(response));
        return;
      }
      record.status = answer;
      response.writeHead(answer).end();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  const port = await listen(0);
  const down = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await closed;
  };
  return {
    port,
    requests,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    verifyWith: (value) => void (secret = value),
    on: (path, behaviour) => void behaviours.set(path, behaviour),
    open: (path) => hanging.get(path)?.size ?? 0,
    down,
    up: async () => void (await listen(port)),
    close: async () => {
      if (server.listening) await down();
    },
  };
}

/** Verifies a received request with the standardwebhooks package, as a receiver would; the parsed message. */
export function verified(secret: string, request: ReceivedRequest): WebhookMessage {
  return new Webhook(secret).verify(request.body, request.headers) as WebhookMessage;
}

export interface WebhookMessage {
  type: 'task.done' | 'task.failed' | 'task.deleted';
  timestamp: string;
  data: {
    id: string;
    status: string;
    error: string | null;
    progress: number;
    attempts: number;
    version: number;
    resultOfJob: string | null;
    result: { id: string; format: string; width: number; height: number; byteSize: number; url: string } | null;
    finishedAt: string | null;
  };
}
