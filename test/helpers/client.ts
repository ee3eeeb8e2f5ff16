// A minimal GraphQL-over-HTTP client for tests, with typed documents from codegen.
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type ExecutionResult } from 'graphql';

export interface Client {
  url: string;
  key: string | null;
  request<R, V>(document: TypedDocumentNode<R, V>, variables?: V, headers?: Record<string, string>): Promise<ExecutionResult<R> & { status: number }>;
  upload<R, V>(document: TypedDocumentNode<R, V>, variables: V, file: { path: string; bytes: Uint8Array; name?: string; type?: string }): Promise<ExecutionResult<R> & { status: number }>;
}

export function client(url: string, key: string | null): Client {
  const auth: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  return {
    url,
    key,
    async request(document, variables, headers = {}) {
      const response = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', ...auth, ...headers },
        body: JSON.stringify({ query: print(document), variables }),
      });
      return { status: response.status, ...(await response.json()) };
    },
    async upload(document, variables, file) {
      // GraphQL multipart request spec: operations, map, then the file part.
      const form = new FormData();
      form.append('operations', JSON.stringify({ query: print(document), variables }));
      form.append('map', JSON.stringify({ 0: [file.path] }));
      form.append('0', new Blob([file.bytes as Uint8Array<ArrayBuffer>], { type: file.type ?? 'application/octet-stream' }), file.name ?? 'upload.bin');
      const response = await fetch(`${url}/graphql`, { method: 'POST', headers: auth, body: form });
      return { status: response.status, ...(await response.json()) };
    },
  };
}

export async function until<T>(probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms; last value: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
