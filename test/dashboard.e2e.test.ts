// The dashboard in a real browser: Debian's Chromium driven by playwright-core against the
// running service. A person pastes a key, uploads an image and watches the task reach DONE
// and its thumbnail appear without reloading; tasks created elsewhere (REST) appear live
// too, a failed task shows its error, and the delete button deletes.
import os from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, type Browser } from './helpers/browser.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { freePort } from './helpers/outage.ts';
import { startService, type Service } from './helpers/service.ts';

/** Where the screenshot of the finished dashboard goes (kept for the report and README). */
const SCREENSHOT = process.env.DASHBOARD_SCREENSHOT ?? path.join(os.tmpdir(), 'tasklane-dashboard.png');

let infra: TestInfra;
let service: Service;
/** A fixed port, so the service can be restarted where the page's EventSource reconnects. */
let port: string;
let key: string;
let jpeg: Buffer;
let browser: Browser;
let page: Page;
const consoleErrors: string[] = [];
/** Every URL the page requested, and those of its event streams (EventSource). */
const requested: string[] = [];
const eventStreams: string[] = [];
/** How many stream tickets the page asked for (createStreamTicket requests). */
let ticketRequests = 0;

beforeAll(async () => {
  infra = await createInfra('dashboard');
  port = String(await freePort());
  [service, jpeg] = await Promise.all([startService(infra, { WORKERS: '1', PORT: port }), photo(1600, 1200)]);
  key = await infra.createKey('dashboard');
  browser = await launchChromium({ width: 1200, height: 640 });
  page = browser.page;
  page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));
  page.on('pageerror', (error) => consoleErrors.push(error.message));
  page.on('request', (request) => {
    requested.push(request.url());
    if (request.headers().accept?.includes('text/event-stream')) eventStreams.push(request.url());
    if (request.method() === 'POST' && request.postData()?.includes('createStreamTicket')) ticketRequests++;
  });
});

afterAll(async () => {
  await browser?.close();
  await service?.stop();
  await infra?.dispose();
});

async function submitByRest(bytes: Uint8Array): Promise<string> {
  const form = new FormData();
  form.append('jobDefinition', 'IMAGE_RESIZE');
  form.append('width', '200');
  form.append('image', new Blob([bytes as Uint8Array<ArrayBuffer>]), 'x.jpg');
  const headers = { authorization: `Bearer ${key}` };
  const { id } = await (await fetch(`${service.url}/api/tasks`, { method: 'POST', headers, body: form })).json();
  expect((await fetch(`${service.url}/api/tasks/${id}/run`, { method: 'POST', headers })).status).toBe(202);
  return id as string;
}

const row = (status: string) => `tr[data-status="${status}"]`;

describe('the dashboard', () => {
  it('serves the page with a strict content security policy', async () => {
    const response = await fetch(`${service.url}/dashboard`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(response.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect((await fetch(`${service.url}/dashboard/nothing.js`)).status).toBe(404);
  });

  it('refuses a wrong key, then connects with a right one', async () => {
    await page.goto(`${service.url}/dashboard`);
    await page.fill('#key', 'tl_wrong');
    await page.click('#connect button');
    await page.waitForSelector('#connection[data-state="error"]');
    expect(await page.textContent('#connection')).toMatch(/API key/);
    expect(await page.isHidden('#upload')).toBe(true);

    await page.fill('#key', key);
    await page.click('#connect button');
    await page.waitForSelector('#connection[data-state="live"]');
    expect(await page.isVisible('#upload')).toBe(true);
  });

  it('uploads an image and shows the task reach DONE with its thumbnail, without reloading', async () => {
    // A marker on the window: it survives only if the page is never reloaded.
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    await page.setInputFiles('#file', { name: 'photo.jpg', mimeType: 'image/jpeg', buffer: jpeg });
    await page.fill('#width', '480');
    await page.selectOption('#format', 'WEBP');
    await page.click('#upload button[type="submit"]');

    await page.waitForFunction(
      () => {
        const img = document.querySelector<HTMLImageElement>('tr[data-status="DONE"] td.result img');
        return Boolean(img && img.complete && img.naturalWidth > 0);
      },
      undefined,
      { timeout: 60_000 },
    );
    const done = page.locator(row('DONE')).first();
    expect(await done.locator('.percent').textContent()).toBe('100%');
    expect(await done.locator('td.duration').textContent()).toMatch(/^\d+(\.\d+)? (ms|s)$/);
    const thumbnail = await done.locator('td.result img').evaluate((img: HTMLImageElement) => ({
      natural: [img.naturalWidth, img.naturalHeight],
      shown: img.clientWidth,
    }));
    expect(thumbnail.natural).toEqual([480, 360]); // the real result, drawn small
    expect(thumbnail.shown).toBeLessThanOrEqual(96);
    const href = await done.locator('td.result a').getAttribute('href');
    expect(href).toMatch(/^\/images\/[0-9a-f-]{36}\?exp=\d+&sig=/);
    const full = await fetch(`${service.url}${href}`);
    expect(full.headers.get('content-type')).toBe('image/webp');
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
  });

  it('shows tasks created elsewhere live, including a failure and its error', async () => {
    const good = await submitByRest(jpeg);
    const bad = await submitByRest(jpeg.subarray(0, Math.floor(jpeg.byteLength / 2)));
    await page.waitForSelector(`tr[data-task-id="${good}"][data-status="DONE"] td.result img`, { timeout: 60_000 });
    await page.waitForSelector(`tr[data-task-id="${bad}"][data-status="FAILED"]`, { timeout: 60_000 });
    expect(await page.textContent(`tr[data-task-id="${bad}"] td.error`)).toMatch(/image/);
    // Newest first.
    const order = await page.$$eval('#tasks tbody tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.taskId));
    expect(order.slice(0, 2)).toEqual([bad, good]);
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  it('deletes a task with its button', async () => {
    const target = page.locator(row('FAILED')).first();
    const id = await target.getAttribute('data-task-id');
    await target.locator('button.delete').click();
    await page.waitForSelector(`tr[data-task-id="${id}"][data-status="DELETED"]`);
    const status = await (await fetch(`${service.url}/api/tasks/${id}/status`, { headers: { authorization: `Bearer ${key}` } })).json();
    expect(status.status).toBe('DELETED');
    // The browser logs the wrong key's 401 as a failed resource; nothing else may fail.
    expect(consoleErrors.filter((text) => !/status of 401/.test(text))).toEqual([]);
  });

  it('says why an upload is refused', async () => {
    await page.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image at all') });
    await page.fill('#width', '100');
    await page.click('#upload button[type="submit"]');
    await page.waitForSelector('#upload-message.error');
    expect(await page.textContent('#upload-message')).toMatch(/^InvalidImage: /);
  });

  it('reconnects by itself after the API restarts, and catches up', async () => {
    await page.evaluate(() => ((window as unknown as { restarts: number }).restarts = 1));
    await service.stop();
    await page.waitForSelector('#connection:not([data-state="live"])', { timeout: 30_000 });
    service = await startService(infra, { WORKERS: '1', PORT: port });
    // Created as soon as the API is back: the page's EventSource may not be reconnected
    // yet, so this one reaches the page through the re-read on reconnect or the stream.
    // Node's fetch may still hold a keep-alive socket to the old process, which fails the
    // first POST with "other side closed" (undici does not retry a POST): try again then.
    let id: string | undefined;
    for (let attempt = 1; !id; attempt++) {
      try {
        id = await submitByRest(jpeg);
      } catch (error) {
        if (attempt >= 3 || (error as { cause?: { code?: string } }).cause?.code !== 'UND_ERR_SOCKET') throw error;
      }
    }
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 60_000 });
    await page.waitForSelector(`tr[data-task-id="${id}"][data-status="DONE"] td.result img`, { timeout: 60_000 });
    expect(await page.evaluate(() => (window as unknown as { restarts?: number }).restarts)).toBe(1); // never reloaded
  }, 300_000); // a restart of every process, on a loaded machine

  it('never puts the API key in a URL: its event streams carry a stream ticket', async () => {
    expect(requested.length).toBeGreaterThan(0);
    const encodedKey = encodeURIComponent(key);
    expect(requested.filter((url) => url.includes(key) || url.includes(encodedKey) || new URL(url).searchParams.has('token'))).toEqual([]);
    expect(eventStreams.length).toBeGreaterThanOrEqual(2); // before and after the restart
    const tickets = eventStreams.map((url) => new URL(url).searchParams.get('ticket'));
    expect(tickets.every((ticket) => ticket && /^[\w-]+\.\d+\.[\w-]+$/.test(ticket))).toBe(true);
    // Tickets come from createStreamTicket (the key travels in a header there). The browser's own
    // reconnect reuses its URL, and so its ticket while that is valid (60 s); the page asks for
    // a new one when it connects again itself (after an HTTP error ended the stream).
    expect(ticketRequests).toBeGreaterThanOrEqual(1);
  });
});
