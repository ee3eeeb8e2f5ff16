// Delivers callbacks: claims due messages from the outbox (store.ts), POSTs each as a
// Standard Webhooks message signed with its key name's secret, records the attempt, and
// retries with exponential backoff until a 2xx or CALLBACK_RETRY_FOR_MS (24 h).
//
// It runs in every worker process, beside the reconciler: workers are the processes that do
// background work on every deployment, scale out with it, and keep outgoing requests to
// client-chosen URLs off the API processes. It never holds up a worker's jobs: it has its
// own timer and at most CALLBACK_CONCURRENCY attempts in flight, each only network I/O
// bounded by CALLBACK_TIMEOUT_MS, while the resizing happens in the executor processes.
// Its only state is PostgreSQL's: a crash, a restart or a Redis flush loses nothing.
import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { config } from '../config.ts';
import { loadSigningSecret, signedImageUrl } from '../image-urls.ts';
import { log } from '../log.ts';
import { callbackDeliveries } from '../metrics.ts';
import { callbackSecret } from '../tasks/keys.ts';
import { AddressRefused, guardedLookup, literalRefusal } from './address-policy.ts';
import { claimDue, recordAttempt, type AttemptOutcome, type ClaimedCallback } from './store.ts';

export interface DeliveryOptions {
  allowPrivate: boolean;
  timeoutMs: number;
  retryBaseMs: number;
  retryForMs: number;
  concurrency: number;
  pollIntervalMs: number;
}

export const deliveryOptions = (): DeliveryOptions => ({
  allowPrivate: config.webhookAllowPrivateNetworks,
  timeoutMs: config.callbackTimeoutMs,
  retryBaseMs: config.callbackRetryBaseMs,
  retryForMs: config.callbackRetryForMs,
  concurrency: config.callbackConcurrency,
  pollIntervalMs: config.callbackPollIntervalMs,
});

/** The longest wait between two attempts. */
const MAX_RETRY_DELAY_MS = 3600_000;
/** A claim outlives its attempt by this much (the record's round trip), then another process may take it over. */
const LEASE_MARGIN_MS = 5000;
/** Recorded errors are cut to this length. */
const MAX_ERROR_LENGTH = 500;
const USER_AGENT = 'Tasklane-Callbacks/1 (Standard Webhooks)';

/** The wait after failed attempt `attempt` (1-based): base × 2^(attempt-1), at most an hour, ±20%. */
export function retryDelayMs(attempt: number, baseMs: number): number {
  const delay = Math.min(MAX_RETRY_DELAY_MS, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(delay * (0.8 + Math.random() * 0.4));
}

/** `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed with the secret's bytes (Standard Webhooks). */
export function webhookSignature(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

/**
 * The message: the event, when it happened, and the task as the transition left it. Built
 * anew for each attempt only for result.url, whose signature expires (IMAGE_URL_TTL_SECONDS).
 */
export function messageBody(message: Pick<ClaimedCallback, 'event' | 'createdAt' | 'data'>): string {
  const d = message.data;
  return JSON.stringify({
    type: message.event,
    timestamp: message.createdAt.toISOString(),
    data: {
      id: d.id,
      status: d.status,
      error: d.error,
      progress: d.progress,
      attempts: d.attempts,
      version: d.version,
      resultOfJob: d.resultOfJob,
      result: d.result ? { ...d.result, url: signedImageUrl(d.result.id) } : null,
      finishedAt: d.finishedAt === null ? null : new Date(d.finishedAt).toISOString(),
    },
  });
}

/**
 * POSTs `body` and resolves with the answer's status code, once its status line is in (the
 * body is not read). Redirects are not followed (node's http never does): a 3xx is a failed
 * attempt. The address connected to is the one the policy checked (address-policy.ts).
 */
function post(url: URL, body: string, headers: Record<string, string>, options: DeliveryOptions): Promise<number> {
  const refusal = literalRefusal(url, options.allowPrivate);
  if (refusal) return Promise.reject(new AddressRefused(refusal));
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? https : http).request(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      agent: false, // a connection of its own: nothing is reused across messages or tenants
      lookup: guardedLookup(options.allowPrivate),
    });
    const timer = setTimeout(
      () => request.destroy(new Error(`timed out after ${options.timeoutMs} ms (CALLBACK_TIMEOUT_MS)`)),
      options.timeoutMs,
    );
    request.on('response', (response) => {
      clearTimeout(timer);
      resolve(response.statusCode ?? 0);
      response.on('error', () => {});
      response.destroy();
    });
    request.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    request.end(body);
  });
}

/** An error as recorded: its message (a failed connect to several addresses is an AggregateError without one). */
function describe(error: unknown): string {
  if (error instanceof AggregateError && !error.message) return error.errors.map(describe).join('; ');
  return error instanceof Error ? error.message || error.name : String(error);
}

let imageUrlsReady: Promise<void> | undefined;

/** One attempt of one claimed message, recorded; never throws. */
async function attempt(message: ClaimedCallback, options: DeliveryOptions): Promise<void> {
  const context = { taskId: message.taskId, callbackId: message.id, event: message.event, attempt: message.attempts };
  const outcome: AttemptOutcome = { statusCode: null, error: null, accepted: false };
  try {
    const secret = await callbackSecret(message.ownerId);
    if (!secret) throw new Error(`not signed: the key name ${message.ownerId} has no API key`);
    await (imageUrlsReady ??= loadSigningSecret().catch((error) => {
      imageUrlsReady = undefined;
      throw error;
    }));
    const body = messageBody(message);
    const timestamp = Math.floor(Date.now() / 1000);
    outcome.statusCode = await post(new URL(message.url), body, {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      'webhook-id': message.id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': webhookSignature(secret, message.id, timestamp, body),
    }, options);
    outcome.accepted = outcome.statusCode >= 200 && outcome.statusCode < 300;
  } catch (error) {
    outcome.error = describe(error).slice(0, MAX_ERROR_LENGTH);
  }
  let recorded;
  try {
    recorded = await recordAttempt(message, outcome, retryDelayMs(message.attempts, options.retryBaseMs), options.retryForMs);
  } catch (error) {
    // Not recorded: when the lease runs out, the next claim records it as without outcome and tries again.
    log.warn({ ...context, err: (error as Error).message }, 'could not record a callback attempt; it will be made again');
    return;
  }
  if (!recorded) {
    log.warn(context, 'callback attempt outlived its lease; another process took the message over');
    return;
  }
  const result = recorded.delivered ? 'delivered' : recorded.gaveUp ? 'gave_up' : 'failed';
  callbackDeliveries.inc({ outcome: result });
  const details = { ...context, statusCode: outcome.statusCode, err: outcome.error ?? undefined, nextAttemptAt: recorded.nextAttemptAt ?? undefined };
  if (recorded.delivered) log.info(details, 'callback delivered');
  else if (recorded.gaveUp) log.warn(details, 'callback given up: not accepted within CALLBACK_RETRY_FOR_MS');
  else log.info(details, 'callback attempt failed; retrying later');
}

/** Claims what is due (up to `limit`) and makes those attempts; resolves when all are recorded. For tests. */
export async function deliverDue(options: DeliveryOptions = deliveryOptions(), limit = options.concurrency): Promise<number> {
  const claimed = await claimDue(limit, options.timeoutMs + LEASE_MARGIN_MS);
  await Promise.all(claimed.map((message) => attempt(message, options)));
  return claimed.length;
}

/** Delivers callbacks until the returned stop function is called (which waits for the attempts in flight). */
export function startCallbackDelivery(options: DeliveryOptions = deliveryOptions()): () => Promise<void> {
  const inFlight = new Set<Promise<void>>();
  let stopped = false;
  let ticking = false;
  let again = false;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Infinity;
  // During an outage every claim fails the same way: say so once a minute, not once per poll.
  let failures = 0;
  const everyNth = Math.max(1, Math.round(60_000 / options.pollIntervalMs));

  const schedule = (ms: number) => {
    if (stopped) return;
    if (timer && Date.now() + ms >= timerAt) return;
    clearTimeout(timer);
    timerAt = Date.now() + ms;
    timer = setTimeout(() => {
      timer = undefined;
      timerAt = Infinity;
      void tick();
    }, ms);
  };

  const tick = async () => {
    if (ticking) {
      again = true;
      return;
    }
    ticking = true;
    const free = options.concurrency - inFlight.size;
    let claimed: ClaimedCallback[] = [];
    try {
      if (free > 0) claimed = await claimDue(free, options.timeoutMs + LEASE_MARGIN_MS);
      if (failures) log.info({ failures }, 'callback claims work again');
      failures = 0;
    } catch (error) {
      if (failures++ % everyNth === 0) log.warn({ err: (error as Error).message, failures }, 'could not claim due callbacks');
    }
    for (const message of claimed) {
      const running: Promise<void> = attempt(message, options).finally(() => {
        inFlight.delete(running);
        schedule(0); // a slot is free: more may be due
      });
      inFlight.add(running);
    }
    ticking = false;
    // A full batch: there may be more due, claimed as slots free up; else look again later.
    if (again) {
      again = false;
      schedule(0);
    } else if (claimed.length < free || free <= 0) schedule(options.pollIntervalMs);
  };

  schedule(0);
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await Promise.allSettled([...inFlight]);
  };
}
