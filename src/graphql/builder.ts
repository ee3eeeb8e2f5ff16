// The schema builder: type parameters, plugins, scalars and root types. Every other file
// in src/graphql registers its own types and fields on it.
import SchemaBuilder from '@pothos/core';
import ErrorsPlugin from '@pothos/plugin-errors';
import RelayPlugin from '@pothos/plugin-relay';
import { GraphQLError } from 'graphql';
import type { Upload } from '../tasks/images.ts';
import type { Caller } from '../tasks/keys.ts';
import type { Loaders } from './loaders.ts';

export interface Context {
  caller: Caller;
  loaders: Loaders;
}

export const builder = new SchemaBuilder<{
  Context: Context;
  DefaultFieldNullability: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    File: { Input: Upload; Output: never };
    ID: { Input: string; Output: string };
  };
}>({
  plugins: [ErrorsPlugin, RelayPlugin],
  defaultFieldNullability: false,
  errors: { directResult: true },
  relay: { clientMutationId: 'omit', cursorType: 'String', nodeQueryOptions: false, nodesQueryOptions: false },
});

builder.scalarType('DateTime', {
  description: 'An ISO-8601 date and time in UTC, e.g. 2026-11-27T10:00:00.000Z',
  serialize: (value) => value.toISOString(),
  parseValue: (value) => {
    const date = new Date(String(value));
    if (Number.isNaN(date.getTime())) throw new GraphQLError('DateTime must be an ISO-8601 string');
    return date;
  },
});

/**
 * An uploaded file as the multipart parser hands it over (src/http/multipart.ts; a web File
 * would do too). Variables parsed from JSON never hold a function, so a `stream` method
 * means a file part.
 */
export function isUploadedFile(value: unknown): value is Upload {
  const file = value as Partial<Upload> | null;
  return typeof file === 'object' && file !== null && typeof file.stream === 'function';
}

const NOT_A_FILE = 'File takes a file part of a multipart request (GraphQL multipart request specification)';

builder.scalarType('File', {
  description: 'A file upload (GraphQL multipart request specification)',
  serialize: () => {
    throw new GraphQLError('File is an input-only scalar');
  },
  // Only a mapped file part: a string or an object in the variables never reaches a resolver.
  parseValue: (value) => {
    if (!isUploadedFile(value)) throw new GraphQLError(NOT_A_FILE);
    return value;
  },
  parseLiteral: () => {
    throw new GraphQLError(NOT_A_FILE);
  },
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
