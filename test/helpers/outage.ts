// Outages of one deployment's dependencies without touching the shared servers: a TCP
// proxy (in front of PostgreSQL, the S3 server or the API) that can refuse and cut
// connections ("PostgreSQL is down"), lose an answer and count the bytes sent through it,
// and a private, throw-away redis-server that can be killed and started again on the same
// port ("Redis restarted and forgot everything", scripts included).
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { Redis } from 'ioredis';

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface TcpProxy {
  port: number;
  /** Refuses new connections and cuts the open ones. */
  down(): Promise<void>;
  /** Accepts connections again, on the same port. */
  up(): Promise<void>;
  close(): Promise<void>;
  /** Bytes the clients have sent to the target so far. */
  forwarded(): number;
  /**
   * The next connection's requests reach the target, but the connection is cut as its answer
   * starts (the target has done the work; the client never hears of it), as a crash or a
   * network cut after the commit would. Later connections pass as they are.
   */
  loseNextAnswer(): void;
  /** Answers cut so far by loseNextAnswer. */
  answersLost(): number;
}

export async function tcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let forwarded = 0;
  let answersToLose = 0;
  let answersLost = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
    }
    client.on('data', (chunk: Buffer) => void (forwarded += chunk.length));
    client.pipe(upstream);
    if (answersToLose > 0) {
      answersToLose--;
      upstream.once('data', () => {
        answersLost++;
        client.destroy();
        upstream.destroy();
      });
    } else {
      upstream.pipe(client);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  const port = await freePort();
  const listen = () => new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const stop = async () => {
    const closed = new Promise((resolve) => server.close(resolve));
    for (const socket of sockets) socket.destroy();
    await closed;
  };
  await listen();
  return {
    port,
    down: stop,
    up: listen,
    close: () => (server.listening ? stop() : Promise.resolve()),
    forwarded: () => forwarded,
    loseNextAnswer: () => void answersToLose++,
    answersLost: () => answersLost,
  };
}

export interface PrivateRedis {
  url: string;
  /** A client for the test itself (reconnects on its own after restarts). */
  client: Redis;
  /** SIGKILL: the server and everything in it are gone. */
  kill(): Promise<void>;
  /** Starts an empty server on the same port again. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function privateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let server: ChildProcess | null = null;
  const start = async () => {
    server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    // Ready when it answers.
    for (let i = 0; i < 200; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.end();
          resolve(true);
        });
        socket.on('error', () => resolve(false));
      });
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server did not start on port ${port}`);
  };
  const kill = async () => {
    const current = server;
    if (!current || current.exitCode !== null || current.signalCode !== null) return;
    const exited = new Promise((resolve) => current.once('exit', resolve));
    current.kill('SIGKILL');
    await exited;
  };
  await start();
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url, { maxRetriesPerRequest: 3, retryStrategy: () => 200 });
  client.on('error', () => {});
  return {
    url,
    client,
    kill,
    start,
    async close() {
      client.disconnect();
      await kill();
    },
  };
}
