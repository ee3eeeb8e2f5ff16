// bee-queue doubles its wait after each failed attempt to take a job, without a ceiling;
// src/redis.ts caps it (MAX_QUEUE_RETRY_DELAY_MS) through the one internal field bee-queue
// keeps it in. This checks the cap, and that bee-queue still works that way (were it to
// change, the cap would silently stop working).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';

process.env.REDIS_PREFIX = `tltest_retry_${randomBytes(4).toString('hex')}`;
const { closeRedis, MAX_QUEUE_RETRY_DELAY_MS, taskQueue } = await import('../src/redis.ts');

afterAll(() => closeRedis());

describe("the worker queue's retry delay", () => {
  it(`doubles from 250 ms and stops at ${MAX_QUEUE_RETRY_DELAY_MS} ms`, () => {
    const queue = taskQueue('worker') as unknown as { _redisFailureRetryDelay: number };
    const delays: number[] = [];
    queue._redisFailureRetryDelay = 0;
    for (let failure = 0; failure < 10; failure++) {
      // What Queue#_waitForJob does after each failed BRPOPLPUSH:
      queue._redisFailureRetryDelay = queue._redisFailureRetryDelay ? queue._redisFailureRetryDelay * 2 : 250;
      delays.push(queue._redisFailureRetryDelay);
    }
    expect(delays).toEqual([250, 500, 1000, 2000, 2000, 2000, 2000, 2000, 2000, 2000]);
  });

  it('is still kept, doubled and reset in that field by bee-queue', () => {
    const source = readFileSync(createRequire(import.meta.url).resolve('bee-queue/lib/queue.js'), 'utf8');
    expect(source).toMatch(/this\._redisFailureRetryDelay\s*\?\s*this\._redisFailureRetryDelay \* 2/);
    expect(source).toMatch(/\.delay\(this\._redisFailureRetryDelay\)/);
    expect(source).toMatch(/this\._redisFailureRetryDelay = 0;/);
  });
});
