// A light GraphQL client for the benchmarks: multipart uploads (createTask) and small
// queries over node's fetch, with keep-alive connections.

const CREATE = `mutation ($input: CreateTaskInput!) {
  createTask(input: $input) { __typename ... on Task { id status } ... on Error { message } }
}`;

export interface ResizeSpec {
  width?: number;
  height?: number;
  format?: string;
  quality?: number;
}

export class GraphQLClient {
  constructor(
    readonly url: string,
    readonly key: string,
  ) {}

  async request<T = any>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const response = await fetch(`${this.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${this.key}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await response.json()) as { data?: T; errors?: unknown };
    if (!body.data || body.errors) throw new Error(`GraphQL error: ${JSON.stringify(body.errors ?? body)}`);
    return body.data;
  }

  /** createTask through the GraphQL multipart request spec; returns the task id. */
  async createTask(image: Uint8Array, resize: ResizeSpec, run: boolean): Promise<string> {
    const form = new FormData();
    form.append('operations', JSON.stringify({ query: CREATE, variables: { input: { jobDefinition: 'IMAGE_RESIZE', image: null, resize, run } } }));
    form.append('map', JSON.stringify({ 0: ['variables.input.image'] }));
    form.append('0', new Blob([image as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' }), 'photo.jpg');
    const response = await fetch(`${this.url}/graphql`, { method: 'POST', headers: { authorization: `Bearer ${this.key}` }, body: form });
    const body = (await response.json()) as { data?: { createTask: { __typename: string; id?: string; message?: string } } };
    const result = body.data?.createTask;
    if (result?.__typename !== 'Task' || !result.id) throw new Error(`createTask failed: ${JSON.stringify(body)}`);
    return result.id;
  }

  async runTask(id: string): Promise<void> {
    const data = await this.request<{ runTask: { __typename: string } }>(
      'mutation ($id: ID!) { runTask(id: $id) { __typename } }',
      { id },
    );
    if (data.runTask.__typename !== 'Task') throw new Error(`runTask failed: ${JSON.stringify(data)}`);
  }
}
