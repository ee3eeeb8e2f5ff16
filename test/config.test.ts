// Configuration fails fast, naming the variable.
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.ts';

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 4000,
      databaseUrl: 'postgresql://postgres@127.0.0.1:5432/tasklane',
      redisUrl: 'redis://127.0.0.1:6379',
      redisPrefix: 'tasklane',
      jobTimeoutMs: 120_000,
      maxAttempts: 3,
      maxUploadBytes: 26_214_400,
      maxRequestBytes: 1_048_576,
      maxInputPixels: 50_000_000,
      maxActiveTasksPerKey: 1000,
      uploadTtlMs: 900_000,
      maxPendingUploadsPerKey: 100,
      maxOutputPixels: 50_000_000,
      workerNice: 10,
      rateLimitPerMinute: 1200,
      graphqlLimits: { maxDepth: 15, maxAliases: 15, maxTokens: 1000, maxDirectives: 10, maxCost: 25_000 },
      webhookAllowPrivateNetworks: false,
      callbackTimeoutMs: 10_000,
      callbackRetryBaseMs: 5000,
      callbackRetryForMs: 86_400_000,
      callbackConcurrency: 16,
      callbackPollIntervalMs: 1000,
      resultTtlMs: 604_800_000,
      taskTtlMs: 2_592_000_000,
    });
    expect(config.workers).toBeGreaterThanOrEqual(1);
  });

  it("points the default URLs at the ports where npm start runs its own PostgreSQL and Redis (LOCAL_PG_PORT, LOCAL_REDIS_PORT)", () => {
    const root = fileURLToPath(new URL('..', import.meta.url));
    expect(loadConfig({}).localServices).toEqual({ postgres: true, postgresPort: 5432, redis: true, redisPort: 6379, dir: path.join(root, 'data') });
    const moved = loadConfig({ LOCAL_PG_PORT: '55432', LOCAL_REDIS_PORT: '56379', LOCAL_SERVICES_DIR: '/srv/tasklane' });
    expect(moved).toMatchObject({ databaseUrl: 'postgresql://postgres@127.0.0.1:55432/tasklane', redisUrl: 'redis://127.0.0.1:56379' });
    expect(moved.localServices).toMatchObject({ postgresPort: 55432, redisPort: 56379, dir: '/srv/tasklane' });
    // A URL that is set is used as it is, and npm start runs nothing for it.
    const given = loadConfig({ DATABASE_URL: 'postgresql://db.example/tasklane', REDIS_URL: 'redis://cache.example:6379', LOCAL_PG_PORT: '55432' });
    expect(given).toMatchObject({ databaseUrl: 'postgresql://db.example/tasklane', localServices: { postgres: false, redis: false } });
  });

  it('keeps blobs in data/blobs under the project root by default, whatever the working directory', () => {
    const root = fileURLToPath(new URL('..', import.meta.url));
    expect(loadConfig({}).storage).toEqual({ kind: 'disk', root: path.join(root, 'data', 'blobs') });
    expect(loadConfig({ STORAGE_URL: 'file:///srv/blobs' }).storage).toEqual({ kind: 'disk', root: '/srv/blobs' });
  });

  it('reads an S3 store: bucket, prefix, endpoint, region and path style', () => {
    expect(loadConfig({ STORAGE_URL: 's3://images-bucket/tasklane/prod/' }).storage).toEqual({
      kind: 's3',
      bucket: 'images-bucket',
      prefix: 'tasklane/prod/',
      endpoint: undefined,
      region: 'us-east-1',
      forcePathStyle: false,
    });
    expect(
      loadConfig({ STORAGE_URL: 's3://minio-bucket', S3_ENDPOINT: 'http://127.0.0.1:9000', AWS_REGION: 'eu-west-1' }).storage,
    ).toEqual({ kind: 's3', bucket: 'minio-bucket', prefix: '', endpoint: 'http://127.0.0.1:9000', region: 'eu-west-1', forcePathStyle: true });
    expect(
      loadConfig({ STORAGE_URL: 's3://b-1', S3_ENDPOINT: 'https://r2.example', S3_FORCE_PATH_STYLE: 'false' }).storage,
    ).toMatchObject({ forcePathStyle: false });
  });

  it.each([
    ['PORT', 'abc', /PORT must be an integer/],
    ['PORT', '70000', /PORT must be between 0 and 65535/],
    ['WORKERS', '-1', /WORKERS must be an integer/],
    ['DATABASE_URL', 'mysql://x', /DATABASE_URL must use postgresql: or postgres:/],
    ['REDIS_URL', 'not a url', /REDIS_URL must be a URL/],
    ['REDIS_PREFIX', 'has space', /REDIS_PREFIX must be/],
    ['MAX_ATTEMPTS', '0', /MAX_ATTEMPTS must be between 1 and 100/],
    ['WORKER_NICE', '20', /WORKER_NICE must be between 0 and 19/],
    ['LOG_LEVEL', 'loud', /LOG_LEVEL must be one of/],
    ['RATE_LIMIT_PER_MINUTE', '-5', /RATE_LIMIT_PER_MINUTE must be an integer/],
    ['GRAPHQL_MAX_DEPTH', '0', /GRAPHQL_MAX_DEPTH must be between 1 and 1000/],
    ['MAX_REQUEST_BYTES', '100', /MAX_REQUEST_BYTES must be between 1024 and/],
    ['STORAGE_URL', 'http://x', /STORAGE_URL must be file:<directory> or s3:\/\/<bucket>/],
    ['STORAGE_URL', 's3://ab', /STORAGE_URL must be file:<directory> or s3:\/\/<bucket>/],
    ['STORAGE_URL', 's3://bucket/../up', /STORAGE_URL's prefix must be/],
    ['STORAGE_URL', 'file:', /STORAGE_URL needs a directory/],
    ['STORAGE_TIMEOUT_MS', '5', /STORAGE_TIMEOUT_MS must be between 100 and 600000/],
    ['MAX_OUTPUT_PIXELS', '0', /MAX_OUTPUT_PIXELS must be between 1 and/],
    ['MAX_RUNNING_TASKS_PER_KEY', '0', /MAX_RUNNING_TASKS_PER_KEY must be between 1 and/],
    ['WEBHOOK_ALLOW_PRIVATE_NETWORKS', 'maybe', /WEBHOOK_ALLOW_PRIVATE_NETWORKS must be true or false/],
    ['CALLBACK_TIMEOUT_MS', '50', /CALLBACK_TIMEOUT_MS must be between 100 and 120000/],
    ['CALLBACK_RETRY_BASE_MS', '0', /CALLBACK_RETRY_BASE_MS must be between 1 and/],
    ['CALLBACK_RETRY_FOR_MS', '1h', /CALLBACK_RETRY_FOR_MS must be an integer/],
    ['CALLBACK_CONCURRENCY', '0', /CALLBACK_CONCURRENCY must be between 1 and 1000/],
    ['LOCAL_PG_PORT', '0', /LOCAL_PG_PORT must be between 1 and 65535/],
    ['LOCAL_REDIS_PORT', 'x', /LOCAL_REDIS_PORT must be an integer/],
    ['RESULT_TTL_MS', '0', /RESULT_TTL_MS must be between 1 and/],
    ['RESULT_TTL_MS', '1.5', /RESULT_TTL_MS must be an integer/],
    ['TASK_TTL_MS', '-1', /TASK_TTL_MS must be an integer/],
    ['TASK_TTL_MS', '1000', /TASK_TTL_MS must be between 604800000 and/], // less than RESULT_TTL_MS
  ])('refuses %s=%s', (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(message);
  });

  it('caps one key\'s running tasks below this host\'s job slots by default, so one key cannot take every worker', () => {
    expect(loadConfig({ WORKERS: '2' }).maxRunningTasksPerKey).toBe(1);
    expect(loadConfig({ WORKERS: '8' }).maxRunningTasksPerKey).toBe(7);
    expect(loadConfig({ WORKERS: '4', WORKER_CONCURRENCY: '2' }).maxRunningTasksPerKey).toBe(7);
    expect(loadConfig({ WORKERS: '1' }).maxRunningTasksPerKey).toBe(1);
    expect(loadConfig({ WORKERS: '0' }).maxRunningTasksPerKey).toBe(1);
    expect(loadConfig({ WORKERS: '2', MAX_RUNNING_TASKS_PER_KEY: '5' }).maxRunningTasksPerKey).toBe(5);
  });
});

describe('retention times', () => {
  it('keep a task at least as long as its images', () => {
    expect(loadConfig({ RESULT_TTL_MS: '3600000', TASK_TTL_MS: '7200000' })).toMatchObject({ resultTtlMs: 3_600_000, taskTtlMs: 7_200_000 });
    // A RESULT_TTL_MS beyond the default TASK_TTL_MS raises the default with it.
    expect(loadConfig({ RESULT_TTL_MS: String(60 * 86_400_000) }).taskTtlMs).toBe(60 * 86_400_000);
  });
});
