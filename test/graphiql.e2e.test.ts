// GraphiQL in a real browser (Debian's Chromium through playwright-core) against the running
// service: the page and everything it loads come from this server (every request the
// browser makes is recorded; one to anywhere but loopback fails the test), a person pastes
// the key once in the Headers tab, a query answers, and a taskUpdated subscription run from
// GraphiQL shows the task reaching DONE.
import os from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, type Browser } from './helpers/browser.ts';
import { photo } from './helpers/images.ts';
import { createInfra, type TestInfra } from './helpers/infra.ts';
import { startService, type Service } from './helpers/service.ts';

/** Where the screenshot of GraphiQL with a finished subscription goes (docs/graphiql.png in the README). */
const SCREENSHOT = process.env.GRAPHIQL_SCREENSHOT ?? path.join(os.tmpdir(), 'tasklane-graphiql.png');

let infra: TestInfra;
let service: Service;
let key: string;
let jpeg: Buffer;
let browser: Browser;
let page: Page;
/** Every URL the browser asked for (pages, scripts, workers, fetches, streams). */
const requested: string[] = [];
const pageErrors: string[] = [];

/** Whether a request stays on this machine: loopback, or made inside the browser (data:, blob:). */
function staysLocal(address: string): boolean {
  const url = new URL(address);
  if (['data:', 'blob:', 'about:'].includes(url.protocol)) return true;
  return ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}

beforeAll(async () => {
  infra = await createInfra('graphiql');
  [service, jpeg] = await Promise.all([startService(infra, { WORKERS: '1' }), photo(1200, 900)]);
  key = await infra.createKey('graphiql');
  browser = await launchChromium({ width: 1280, height: 720 });
  // Recorded for the whole context: the page, its workers, anything it opens.
  browser.context.on('request', (request) => requested.push(request.url()));
  // Nothing may leave the machine: answered here at once instead of waiting on a DNS failure.
  await browser.context.route((url) => !staysLocal(url.href), (route) => route.abort('internetdisconnected'));
  page = browser.page;
  page.on('pageerror', (error) => pageErrors.push(error.message));
});

afterAll(async () => {
  await browser?.close();
  await service?.stop();
  await infra?.dispose();
});

async function createTask(): Promise<string> {
  const form = new FormData();
  form.append('jobDefinition', 'IMAGE_RESIZE');
  form.append('width', '320');
  form.append('image', new Blob([jpeg as Uint8Array<ArrayBuffer>]), 'photo.jpg');
  const response = await fetch(`${service.url}/api/tasks`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
  expect(response.status).toBe(201);
  return (await response.json()).id;
}

/** Replaces the whole text of a Monaco editor of GraphiQL, as a paste would. */
async function setEditor(selector: string, text: string): Promise<void> {
  await page.click(`${selector} .graphiql-editor:not(.hidden) .view-lines`);
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
}

/** An editor's text as shown (Monaco draws spaces as no-break spaces). */
const shown = (text: string) => text.replace(/\u00a0/g, ' ');
const responseText = async () => shown(await page.locator('.graphiql-response').innerText());

async function run(): Promise<void> {
  await page.click('.graphiql-execute-button');
}

describe('GraphiQL', () => {
  it('loads with no request leaving the machine', async () => {
    await page.goto(`${service.url}/graphql`);
    expect(await page.title()).toBe('Tasklane');
    // The editors are Monaco: up when their workers (blob: URLs of our bundle) run.
    await page.waitForSelector('.graphiql-query-editor .monaco-editor .view-lines', { timeout: 60_000 });
    await page.click('button:has-text("Headers")');
    const headers = page.locator('.graphiql-editor-tool .graphiql-editor:not(.hidden) .view-lines');
    await headers.waitFor();
    expect(shown(await headers.innerText())).toMatch(/"Authorization":\s*"Bearer "/);
    expect(requested.filter((url) => url.startsWith(service.url)).length).toBeGreaterThan(0);
    expect(requested.filter((url) => !staysLocal(url))).toEqual([]);
  });

  it('answers a query once the key is pasted in the Headers tab, and keeps the key for this browser tab only', async () => {
    const id = await createTask();
    await setEditor('.graphiql-editor-tool', JSON.stringify({ Authorization: `Bearer ${key}` }));
    // GraphiQL takes an editor's text into its state after a debounce, and stores the headers
    // (in this tab's sessionStorage) from that state: once stored, a run sends them.
    await page.waitForFunction((k) => JSON.stringify({ ...sessionStorage }).includes(k), key, { timeout: 30_000 });
    await setEditor('.graphiql-query-editor', `{ task(id: "${id}") { __typename ... on Task { id status } } }`);
    // The fetcher picks the stored headers up asynchronously too: run again until the answer is
    // the one for the key (a run without it answers UNAUTHENTICATED).
    await expect
      .poll(
        async () => {
          await run();
          await page.waitForTimeout(500);
          return responseText();
        },
        { timeout: 60_000, interval: 500 },
      )
      .toMatch(/"status": "CREATED"/);
    expect(await responseText()).toContain(id);
    // The schema (introspection, with the pasted key) loads with the re-fetch button: the docs show it.
    await page.click('button[aria-label^="Re-fetch GraphQL schema"]');
    await page.click('button[aria-label^="Show Documentation Explorer"]');
    await page.waitForSelector('.graphiql-doc-explorer :text("Subscription")', { timeout: 30_000 });
    await page.click('button[aria-label^="Hide Documentation Explorer"]');

    // Kept in sessionStorage (a reload keeps it), never in localStorage (on disk, for good).
    const storage = await page.evaluate(() => ({ local: JSON.stringify({ ...localStorage }), session: JSON.stringify({ ...sessionStorage }) }));
    expect(storage.local).not.toContain(key);
    expect(storage.session).toContain(key);
    await page.reload();
    await page.waitForSelector('.graphiql-query-editor .monaco-editor .view-lines', { timeout: 60_000 });
    await setEditor('.graphiql-query-editor', `{ task(id: "${id}") { ... on Task { status jobDefinition } } }`);
    await run();
    await expect.poll(responseText, { timeout: 30_000 }).toMatch(/"jobDefinition": "IMAGE_RESIZE"/);
  });

  it('runs a taskUpdated subscription (SSE) and shows the task reaching DONE', async () => {
    const id = await createTask();
    await setEditor(
      '.graphiql-query-editor',
      `subscription Watch { taskUpdated(id: "${id}") { status progress version result { width height url } } }`,
    );
    await run();
    await expect.poll(responseText, { timeout: 30_000 }).toMatch(/"status": "CREATED"/); // the first event: the current state
    const started = await fetch(`${service.url}/api/tasks/${id}/run`, { method: 'POST', headers: { authorization: `Bearer ${key}` } });
    expect(started.status).toBe(202);
    await expect.poll(responseText, { timeout: 60_000 }).toMatch(/"status": "DONE"/);
    const text = await responseText();
    expect(text).toMatch(/"progress": 1/);
    expect(text).toMatch(/"width": 320/);
    await page.click('button[aria-label^="Prettify"]'); // readable in the screenshot
    await page.click('.graphiql-query-editor .graphiql-editor:not(.hidden) .view-lines');
    await page.keyboard.press('Control+Home');
    await page.screenshot({ path: SCREENSHOT });
    // The stream went to this server, with the key in a header (never in the URL).
    expect(requested.some((url) => url.startsWith(`${service.url}/graphql`) && url.includes('token='))).toBe(false);
    expect(requested.filter((url) => !staysLocal(url))).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
