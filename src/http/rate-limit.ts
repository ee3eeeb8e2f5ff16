// The per-key request rate limit's counter, kept in Redis so it holds across every API
// process. Only edge.ts calls it: edge.ts decides what counts, once per request, and how a
// refusal looks.
// GCRA (a token bucket without a refill timer): one key per tenant stores the "theoretical
// arrival time"; RATE_LIMIT_PER_MINUTE requests may come at once, then one every
// 60 000 / RATE_LIMIT_PER_MINUTE ms. The script runs atomically in Redis and uses Redis'
// clock, so API processes on hosts with skewed clocks agree.
// Redis is a hint here as everywhere: if it does not answer quickly, the request is let
// through (logged) rather than the API going down with Redis.
import type { Redis } from 'ioredis';
import { config } from '../config.ts';
import { log } from '../log.ts';
import { channel, redisCommands } from '../redis.ts';
import { withTimeout } from '../timeout.ts';

const GCRA = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local newTat = tat + interval
local allowAt = newTat - interval * burst
if now < allowAt then return math.ceil(allowAt - now) end
redis.call('SET', KEYS[1], tostring(newTat), 'PX', math.ceil(newTat - now) + 1000)
return 0`;

type LimitedRedis = Redis & { tasklaneRateLimit(key: string, intervalMs: number, burst: number): Promise<number> };

function client(): LimitedRedis {
  const redis = redisCommands() as LimitedRedis;
  // ioredis sends EVALSHA and falls back to EVAL once per connection.
  if (!redis.tasklaneRateLimit) redis.defineCommand('tasklaneRateLimit', { numberOfKeys: 1, lua: GCRA });
  return redis;
}

/** How long Redis may take before the request is let through unlimited. */
const REDIS_BUDGET_MS = 250;
let lastWarning = 0;

/** Counts one request of `owner`: null if allowed, else the ms to wait before the next one. */
export async function takeRequest(owner: string): Promise<number | null> {
  const perMinute = config.rateLimitPerMinute;
  if (perMinute === 0) return null;
  try {
    const waitMs = await withTimeout(client().tasklaneRateLimit(channel(`ratelimit:${owner}`), 60_000 / perMinute, perMinute), REDIS_BUDGET_MS);
    return waitMs > 0 ? waitMs : null;
  } catch (error) {
    if (Date.now() - lastWarning > 10_000) {
      lastWarning = Date.now();
      log.warn({ err: (error as Error).message }, 'rate limit not checked: Redis did not answer (requests are let through)');
    }
    return null;
  }
}
