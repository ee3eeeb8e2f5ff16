// schema.graphql is the printed schema; it must match the code (run `npm run codegen`).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { lexicographicSortSchema, printSchema } from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema } from '../src/graphql/index.ts';
import { ROOT } from './helpers/service.ts';

describe('schema.graphql', () => {
  it('is the printed schema of the code (else: npm run codegen)', () => {
    const committed = readFileSync(path.join(ROOT, 'schema.graphql'), 'utf8');
    expect(committed.trim()).toBe(printSchema(lexicographicSortSchema(schema)).trim());
  });

  it('keeps the public contract of DESIGN.md', () => {
    const sdl = printSchema(schema);
    for (const line of [
      'taskUpdated(id: ID!): Task!',
      'tasksUpdated(status: [TaskStatus!]): Task!',
      'createTask(input: CreateTaskInput!): CreateTaskResult!',
      'runTask(id: ID!): RunTaskResult!',
      'deleteTask(id: ID!): DeleteTaskResult!',
      'task(id: ID!): TaskResult!',
    ]) {
      expect(sdl).toContain(line);
    }
    expect(sdl).toMatch(/tasks\(first: Int, after: String, status: \[TaskStatus!\]\): TaskConnection!/);
  });
});
