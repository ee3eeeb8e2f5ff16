// The one validated configuration of every Tasklane process.
// Each option: environment variable, default, and why that default. A bad value stops
// the process at start-up with a message naming the variable (fail fast, never guess).
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StorageConfig } from './storage/index.ts';

type Parser<T> = (raw: string, name: string) => T;

class ConfigError extends Error {
  override name = 'ConfigError';
}

const integer =
  (min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> =>
  (raw, name) => {
    if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be an integer, got "${raw}"`);
    const value = Number(raw);
    if (value < min || value > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
    return value;
  };

const url =
  (protocols: string[]): Parser<string> =>
  (raw, name) => {
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new ConfigError(`${name} must be a URL, got "${raw}"`);
    }
    if (!protocols.includes(parsed.protocol)) {
      throw new ConfigError(`${name} must use ${protocols.join(' or ')}, got "${parsed.protocol}"`);
    }
    return raw;
  };

const text =
  (pattern?: RegExp, hint?: string): Parser<string> =>
  (raw, name) => {
    if (pattern && !pattern.test(raw)) throw new ConfigError(`${name} ${hint ?? `must match ${pattern}`}, got "${raw}"`);
    return raw;
  };

const oneOf =
  <T extends string>(values: readonly T[]): Parser<T> =>
  (raw, name) => {
    if (!values.includes(raw as T)) throw new ConfigError(`${name} must be one of ${values.join(', ')}, got "${raw}"`);
    return raw as T;
  };

const boolean: Parser<boolean> = (raw, name) => {
  if (/^(true|1|yes)$/i.test(raw)) return true;
  if (/^(false|0|no)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
};

/** The project's root: a relative `file:` STORAGE_URL is relative to it, not to the cwd. */
const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * STORAGE_URL: `file:<dir>` (relative to the project root, or absolute: `file:/srv/blobs`,
 * `file:///srv/blobs`), or `s3://<bucket>[/<prefix>]`.
 */
const storageUrl: Parser<{ kind: 'disk'; root: string } | { kind: 's3'; bucket: string; prefix: string }> = (raw, name) => {
  if (raw.startsWith('file:')) {
    const rest = raw.slice('file:'.length);
    if (rest === '') throw new ConfigError(`${name} needs a directory after "file:", got "${raw}"`);
    const dir = rest.startsWith('//') ? fileURLToPath(raw) : rest;
    return { kind: 'disk', root: path.resolve(PROJECT_ROOT, dir) };
  }
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(raw);
  if (!match) {
    throw new ConfigError(`${name} must be file:<directory> or s3://<bucket>[/<prefix>] (bucket: 3-63 of a-z 0-9 . -), got "${raw}"`);
  }
  const prefix = (match[2] ?? '').replace(/\/+$/, '');
  if (prefix !== '' && !/^[a-z0-9_-][a-z0-9._-]*(\/[a-z0-9_-][a-z0-9._-]*)*$/.test(prefix)) {
    throw new ConfigError(`${name}'s prefix must be segments of a-z 0-9 . _ - (not starting with "."), got "${prefix}"`);
  }
  return { kind: 's3', bucket: match[1], prefix: prefix === '' ? '' : `${prefix}/` };
};

const DAY_MS = 24 * 3600 * 1000;

function read<T>(env: NodeJS.ProcessEnv, name: string, parse: Parser<T>, fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  return parse(raw, name);
}

function loadStorage(env: NodeJS.ProcessEnv): StorageConfig {
  const location = read(env, 'STORAGE_URL', storageUrl, storageUrl('file:data/blobs', 'STORAGE_URL'));
  if (location.kind === 'disk') return location;
  const endpoint = read(env, 'S3_ENDPOINT', url(['http:', 'https:']), '') || undefined;
  return {
    ...location,
    endpoint,
    /** AWS_REGION (us-east-1): S3-compatible stores mostly ignore it; AWS needs the bucket's. */
    region: read(env, 'AWS_REGION', text(/^[a-z0-9-]{2,32}$/, 'must be a region name such as eu-west-1'), 'us-east-1'),
    /** S3_FORCE_PATH_STYLE (true with S3_ENDPOINT, else false): most S3-compatible stores need path-style URLs. */
    forcePathStyle: read(env, 'S3_FORCE_PATH_STYLE', boolean, endpoint !== undefined),
  };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env) {
  const localPostgresPort = read(env, 'LOCAL_PG_PORT', integer(1, 65535), 5432);
  const localRedisPort = read(env, 'LOCAL_REDIS_PORT', integer(1, 65535), 6379);
  const workers = read(env, 'WORKERS', integer(0, 256), os.availableParallelism());
  const workerConcurrency = read(env, 'WORKER_CONCURRENCY', integer(1, 64), 1);
  const resultTtlMs = read(env, 'RESULT_TTL_MS', integer(1), 7 * DAY_MS);
  return {
    /** PORT (4000): the API's HTTP port; 0 picks a free one (tests). */
    port: read(env, 'PORT', integer(0, 65535), 4000),
    /** HOST (0.0.0.0): the address the API listens on; tests use 127.0.0.1. */
    host: read(env, 'HOST', text(/^[\w.:-]+$/, 'must be a host name or address'), '0.0.0.0'),
    /** DATABASE_URL: PostgreSQL, the source of truth. The database is created if missing. */
    databaseUrl: read(env, 'DATABASE_URL', url(['postgresql:', 'postgres:']), `postgresql://postgres@127.0.0.1:${localPostgresPort}/tasklane`),
    /** REDIS_URL: queue and pub/sub. Redis may lose everything; PostgreSQL is the truth. */
    redisUrl: read(env, 'REDIS_URL', url(['redis:', 'rediss:']), `redis://127.0.0.1:${localRedisPort}`),
    /**
     * What `npm start` may run itself (src/cli/local-services.ts): with DATABASE_URL unset and
     * nothing answering on 127.0.0.1:LOCAL_PG_PORT (5432), an embedded PostgreSQL there; with
     * REDIS_URL unset and nothing on 127.0.0.1:LOCAL_REDIS_PORT (6379), a private redis-server
     * there. The default URLs name these ports, so every process and CLI finds them.
     * LOCAL_SERVICES_DIR (data, git-ignored) keeps the database cluster and both logs.
     */
    localServices: {
      postgres: !env.DATABASE_URL,
      postgresPort: localPostgresPort,
      redis: !env.REDIS_URL,
      redisPort: localRedisPort,
      dir: path.resolve(PROJECT_ROOT, read(env, 'LOCAL_SERVICES_DIR', text(), 'data')),
    },
    /** REDIS_PREFIX (tasklane): namespaces every Redis key and channel of one deployment. */
    redisPrefix: read(env, 'REDIS_PREFIX', text(/^[\w.-]{1,64}$/, 'must be 1-64 letters, digits, _ . or -'), 'tasklane'),
    /** WORKERS (CPU cores): worker processes `npm start` runs; sharp is fastest with one image per core. */
    workers,
    /** WORKER_CONCURRENCY (1): images one worker process resizes at once (each in its own executor). */
    workerConcurrency,
    /**
     * WORKER_NICE (10): the scheduling niceness of worker and executor processes (0-19). On a
     * host shared with an API process, resizing then only gets the CPU the API leaves, so
     * heavy work does not slow the API's answers (bench/ measures it). 0 = same priority.
     */
    workerNice: read(env, 'WORKER_NICE', integer(0, 19), 10),
    /** JOB_TIMEOUT_MS (120000): a job running longer is killed (its executor process) and FAILED. */
    jobTimeoutMs: read(env, 'JOB_TIMEOUT_MS', integer(100), 120_000),
    /** MAX_ATTEMPTS (3): deliveries of one task (crashes, stalls, transient errors) before FAILED. */
    maxAttempts: read(env, 'MAX_ATTEMPTS', integer(1, 100), 3),
    /** MAX_UPLOAD_BYTES (25 MiB): larger request bodies are refused with 413 before buffering. */
    maxUploadBytes: read(env, 'MAX_UPLOAD_BYTES', integer(1024), 25 * 1024 * 1024),
    /**
     * MAX_REQUEST_BYTES (1 MiB): the body of a request that is not a multipart upload (a
     * JSON or form-encoded GraphQL request), and each non-file field of a multipart one. Our
     * largest legitimate request (a 1000-token document and its variables) is a few KB.
     */
    maxRequestBytes: read(env, 'MAX_REQUEST_BYTES', integer(1024), 1024 * 1024),
    /**
     * UPLOAD_TTL_MS (900000, 15 min): how long a two-step upload (createUpload) may wait for its
     * PUT and its createTask; then its URL stops working and the reconciler removes it (row and
     * blob). Long enough for a 25 MiB PUT on a slow link, short enough that abandoned uploads
     * do not pile up.
     */
    uploadTtlMs: read(env, 'UPLOAD_TTL_MS', integer(1000, 7 * 24 * 3600 * 1000), 15 * 60 * 1000),
    /**
     * MAX_PENDING_UPLOADS_PER_KEY (100): unused, unexpired two-step uploads one key name may hold
     * (each may hold up to MAX_UPLOAD_BYTES in the store until it expires); more is TooManyTasks.
     */
    maxPendingUploadsPerKey: read(env, 'MAX_PENDING_UPLOADS_PER_KEY', integer(1), 100),
    /** MAX_INPUT_PIXELS (50 MP): checked from the image header, before any decoding. */
    maxInputPixels: read(env, 'MAX_INPUT_PIXELS', integer(1), 50_000_000),
    /**
     * MAX_OUTPUT_PIXELS (50 MP): width x height of a result, computed from the parameters and the
     * source's header; more is refused when the task is created (and by the worker, for older tasks).
     */
    maxOutputPixels: read(env, 'MAX_OUTPUT_PIXELS', integer(1), 50_000_000),
    /** MAX_ACTIVE_TASKS_PER_KEY (1000): CREATED + QUEUED + RUNNING tasks one key (tenant) may hold. */
    maxActiveTasksPerKey: read(env, 'MAX_ACTIVE_TASKS_PER_KEY', integer(1), 1000),
    /**
     * MAX_RUNNING_TASKS_PER_KEY (WORKERS x WORKER_CONCURRENCY - 1, at least 1): RUNNING tasks of one
     * key across every worker on every host while another key's task waits its turn (a key alone
     * uses every idle worker). The default leaves one of this host's job slots to other keys, so
     * one tenant with a thousand tasks cannot keep them waiting; a deployment with workers on
     * several hosts sets it for the whole fleet (see README).
     */
    maxRunningTasksPerKey: read(env, 'MAX_RUNNING_TASKS_PER_KEY', integer(1), Math.max(1, workers * workerConcurrency - 1)),
    /**
     * RATE_LIMIT_PER_MINUTE (1200): requests one key name may make per minute, across every
     * API process (kept in Redis); a full minute's worth may come as one burst. 0 turns it off.
     */
    rateLimitPerMinute: read(env, 'RATE_LIMIT_PER_MINUTE', integer(0, 1_000_000), 1200),
    /** Limits on GraphQL documents, tuned to our schema (see src/http/graphql-limits.ts, SECURITY.md). */
    graphqlLimits: {
      /** GRAPHQL_MAX_DEPTH (15): nesting; standard introspection is 15, our operations at most 5. */
      maxDepth: read(env, 'GRAPHQL_MAX_DEPTH', integer(1, 1000), 15),
      /** GRAPHQL_MAX_ALIASES (15): aliased fields per operation. */
      maxAliases: read(env, 'GRAPHQL_MAX_ALIASES', integer(0, 10_000), 15),
      /** GRAPHQL_MAX_TOKENS (1000): lexical tokens per document; introspection is ~185. */
      maxTokens: read(env, 'GRAPHQL_MAX_TOKENS', integer(10, 1_000_000), 1000),
      /** GRAPHQL_MAX_DIRECTIVES (10): directives per operation. */
      maxDirectives: read(env, 'GRAPHQL_MAX_DIRECTIVES', integer(0, 10_000), 10),
      /** GRAPHQL_MAX_COST (25000): graphql-armor's cost; a full page of 100 tasks with every field is ~23,300. */
      maxCost: read(env, 'GRAPHQL_MAX_COST', integer(1), 25_000),
    },
    /** SIGNING_SECRET (generated once and kept in the database): HMAC key of image URLs. */
    signingSecret: read(env, 'SIGNING_SECRET', text(/^.{32,}$/, 'must be at least 32 characters'), ''),
    /** IMAGE_URL_TTL_SECONDS (3600): how long a signed image URL stays valid. */
    imageUrlTtlSeconds: read(env, 'IMAGE_URL_TTL_SECONDS', integer(1), 3600),
    /** LEASE_MS (6000): a RUNNING task whose worker has not renewed its lease this long is recovered. */
    leaseMs: read(env, 'LEASE_MS', integer(500), 6000),
    /** RECONCILE_INTERVAL_MS (1000): how often one reconciler looks for lost or stuck tasks. */
    reconcileIntervalMs: read(env, 'RECONCILE_INTERVAL_MS', integer(100), 1000),
    /**
     * LIVE_RESYNC_INTERVAL_MS (15000; 0 = only after pub/sub reconnects): how often an API process asks PostgreSQL which
     * tasks of its subscribers' owners changed, for a change message lost while its Redis
     * connection stayed up (the publisher cut off, or killed between commit and publish).
     */
    liveResyncIntervalMs: read(env, 'LIVE_RESYNC_INTERVAL_MS', integer(0), 15_000),
    /**
     * STUCK_QUEUE_MS (30000): a worker with a free slot that sees a due QUEUED task waiting
     * longer than this logs it, counts it (tasklane_stuck_queue_detected_total) and rebuilds
     * its queue consumer. A safety net: a healthy queue hands a task to a free worker in ms.
     */
    stuckQueueMs: read(env, 'STUCK_QUEUE_MS', integer(1000), 30_000),
    /** SHUTDOWN_GRACE_MS (20000): how long SIGTERM waits for in-flight work before forcing. */
    shutdownGraceMs: read(env, 'SHUTDOWN_GRACE_MS', integer(0), 20_000),
    /**
     * METRICS_TOKEN (unset: /metrics is open, as Prometheus expects): when set, /metrics
     * answers only `Authorization: Bearer <METRICS_TOKEN>` (Prometheus' `authorization` scrape setting).
     */
    metricsToken: read(env, 'METRICS_TOKEN', text(), ''), // no pattern: a refusal would print the secret
    /** METRICS_PUSH_INTERVAL_MS (5000): how often each process writes its metrics to Redis for /metrics to merge. */
    metricsPushIntervalMs: read(env, 'METRICS_PUSH_INTERVAL_MS', integer(100, 600_000), 5000),
    /**
     * STORAGE_URL (file:data/blobs, git-ignored): where image bytes live, a directory or
     * s3://<bucket>[/<prefix>]; with s3, S3_ENDPOINT (unset = AWS), AWS_REGION and
     * S3_FORCE_PATH_STYLE too. Credentials: the AWS SDK's default chain (AWS_* variables, profiles, roles).
     */
    storage: loadStorage(env),
    /** STORAGE_TIMEOUT_MS (10000): limit of one store request, and of socket inactivity while streaming. */
    storageTimeoutMs: read(env, 'STORAGE_TIMEOUT_MS', integer(100, 600_000), 10_000),
    /**
     * IMAGE_DOWNLOADS (proxy): how /images/<id> serves bytes. proxy: streamed through the API;
     * redirect: 302 to a presigned store URL (s3 only; the disk store always proxies), which
     * takes the API out of the data path.
     */
    imageDownloads: read(env, 'IMAGE_DOWNLOADS', oneOf(['proxy', 'redirect'] as const), 'proxy'),
    /**
     * WEBHOOK_ALLOW_PRIVATE_NETWORKS (false): callback URLs whose host is or resolves to a
     * loopback, private, link-local (cloud metadata), CGNAT or otherwise non-public address are
     * refused when the task is created, and not connected to when delivering (SSRF; see
     * SECURITY.md). true allows them: a receiver on this host or the internal network (tests).
     */
    webhookAllowPrivateNetworks: read(env, 'WEBHOOK_ALLOW_PRIVATE_NETWORKS', boolean, false),
    /** CALLBACK_TIMEOUT_MS (10000): one callback attempt (connect, send, the answer's status line); longer is a failed attempt. */
    callbackTimeoutMs: read(env, 'CALLBACK_TIMEOUT_MS', integer(100, 120_000), 10_000),
    /**
     * CALLBACK_RETRY_BASE_MS (5000): the wait after a callback's first failed attempt; it
     * doubles after each (at most an hour, with ±20% jitter). Tests set it to a few ms.
     */
    callbackRetryBaseMs: read(env, 'CALLBACK_RETRY_BASE_MS', integer(1, 3_600_000), 5000),
    /**
     * CALLBACK_RETRY_FOR_MS (86400000, 24 h): how long a callback is retried; its last attempt
     * is at this age, then it is given up (recorded). Standard Webhooks receivers expect a day.
     */
    callbackRetryForMs: read(env, 'CALLBACK_RETRY_FOR_MS', integer(0), 24 * 3600 * 1000),
    /** CALLBACK_CONCURRENCY (16): callback attempts one worker process has in flight at once (network waits, not CPU). */
    callbackConcurrency: read(env, 'CALLBACK_CONCURRENCY', integer(1, 1000), 16),
    /** CALLBACK_POLL_INTERVAL_MS (1000): how often each worker process looks for due callbacks. */
    callbackPollIntervalMs: read(env, 'CALLBACK_POLL_INTERVAL_MS', integer(10, 60_000), 1000),
    /**
     * RESULT_TTL_MS (604800000, 7 days): how long the images (source and result) of a task that
     * ended (DONE, FAILED, DELETED) stay in the blob store; then `source`/`result` are null and
     * /images/<id> answers 410. A week covers a client that fetches its result late (a
     * weekend, an outage) without keeping every image for good.
     */
    resultTtlMs,
    /**
     * TASK_TTL_MS (2592000000, 30 days; never less than RESULT_TTL_MS, as an image cannot
     * outlive its task): how long a task that ended stays, with its audit trail, after its last
     * change; then it is removed (TaskDoesNotExist).
     */
    taskTtlMs: read(env, 'TASK_TTL_MS', integer(resultTtlMs), Math.max(resultTtlMs, 30 * DAY_MS)),
    /** LOG_LEVEL (info): fatal, error, warn, info, debug, trace or silent. */
    logLevel: read(env, 'LOG_LEVEL', oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const), 'info'),
    /** NODE_ENV (development): production hides schema hints (suggestions, introspection). */
    production: env.NODE_ENV === 'production',
  };
}

export type Config = ReturnType<typeof loadConfig>;

function loadOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`Configuration error: ${error.message}`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
}

export const config: Config = loadOrExit();
