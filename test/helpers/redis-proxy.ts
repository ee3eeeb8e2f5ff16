// A TCP proxy in front of the shared Redis, so a test can cut one process off Redis (and
// keep it off) without touching anybody else's connections.
import net from 'node:net';
import { REDIS_URL } from './infra.ts';

export interface RedisProxy {
  url: string;
  /** Local ports of the proxy's connections to Redis: `addr` in CLIENT LIST. */
  upstreamPorts(): Set<number>;
  /** While blocked, new connections are closed at once (existing ones keep working). */
  block(): void;
  unblock(): void;
  /** Blocks, and cuts every open connection: Redis is gone for whoever is behind the proxy. */
  cut(): void;
  /**
   * Black-holes the open connections: they stay open but nothing passes any more, as when a
   * firewall or NAT silently drops a connection. New connections work as usual.
   */
  freeze(): void;
  /** How many connections were refused while blocked. */
  refusedConnections(): number;
  close(): Promise<void>;
}

export async function startRedisProxy(): Promise<RedisProxy> {
  const target = new URL(REDIS_URL);
  let blocked = false;
  let refused = 0;
  const ports = new Set<number>();
  const sockets = new Set<net.Socket>();
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((client) => {
    if (blocked) {
      refused++;
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port || 6379), target.hostname);
    let port: number | undefined;
    upstream.on('connect', () => {
      port = upstream.localPort;
      if (port) ports.add(port);
    });
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
      if (port) ports.delete(port);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', close);
      socket.on('close', close);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    upstreamPorts: () => new Set(ports),
    block: () => void (blocked = true),
    unblock: () => void (blocked = false),
    refusedConnections: () => refused,
    freeze() {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
      }
      pairs.clear();
    },
    cut() {
      blocked = true;
      for (const socket of sockets) socket.destroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
