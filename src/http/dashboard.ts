// GET /dashboard: a static page (HTML, CSS, one script, no framework) over the public
// GraphQL API; see src/http/dashboard/dashboard.js. The files are read once at start-up.
import { readFileSync } from 'node:fs';

const dir = new URL('./dashboard/', import.meta.url);
const file = (name: string) => readFileSync(new URL(name, dir));

const FILES: Record<string, { body: Buffer; type: string }> = {
  '': { body: file('index.html'), type: 'text/html; charset=utf-8' },
  '/dashboard.js': { body: file('dashboard.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { body: file('dashboard.css'), type: 'text/css; charset=utf-8' },
  '/favicon.svg': { body: file('favicon.svg'), type: 'image/svg+xml' },
};

// Only our own script and styles; images and requests to this origin only.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function dashboard(request: Request, url: URL): Response {
  const path = url.pathname.slice('/dashboard'.length).replace(/\/$/, '');
  const found = FILES[path];
  if (!found) return new Response('not found\n', { status: 404, headers: { 'content-type': 'text/plain; charset=utf-8' } });
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    return new Response('method not allowed\n', { status: 405, headers: { allow: 'GET, HEAD' } });
  }
  return new Response(request.method === 'HEAD' ? null : new Uint8Array(found.body), {
    status: 200,
    headers: {
      'content-type': found.type,
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-cache',
    },
  });
}
