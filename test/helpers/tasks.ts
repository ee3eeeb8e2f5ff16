// Creating tasks through the API the way a client does (a multipart createTask), for the
// end-to-end tests and `npm run chaos`.
import { graphql } from '../gql/index.ts';
import type { Client } from './client.ts';

const SubmitTask = graphql(`
  mutation SubmitTask($input: CreateTaskInput!) {
    createTask(input: $input) {
      __typename
      ... on Task { id status }
      ... on Error { message }
    }
  }
`);

/** Creates a task (and runs it with `run`); resolves with its id, throws with the API's answer otherwise. */
export async function createTask(c: Client, bytes: Uint8Array, resize: Record<string, unknown>, run = false): Promise<string> {
  const response = await c.upload(
    SubmitTask,
    { input: { jobDefinition: 'IMAGE_RESIZE', image: null as unknown as File, resize, run } },
    { path: 'variables.input.image', bytes, name: 'photo.jpg', type: 'image/jpeg' },
  );
  const task = response.data?.createTask;
  if (task?.__typename !== 'Task') throw new Error(`createTask failed (HTTP ${response.status}): ${JSON.stringify(response)}`);
  return task.id;
}

/** Creates and runs a task; resolves with its id. */
export function submit(c: Client, bytes: Uint8Array, resize: Record<string, unknown>): Promise<string> {
  return createTask(c, bytes, resize, true);
}
