// GraphQL Code Generator: prints schema.graphql from the Pothos schema and generates
// typed documents (test/gql) for the operations the tests write with graphql(`…`).
// `npm run codegen` after any schema change; test/schema.test.ts fails when it is stale.
import type { CodegenConfig } from '@graphql-codegen/cli';
import { printSchema } from 'graphql';
import { schema } from './src/graphql/index.ts';

const config: CodegenConfig = {
  schema: printSchema(schema),
  documents: ['test/**/*.ts', 'bench/**/*.ts', 'src/cli/**/*.ts', '!test/gql/**'],
  ignoreNoDocuments: true,
  emitLegacyCommonJSImports: false, // '.js' import extensions, as NodeNext wants
  generates: {
    'schema.graphql': { plugins: ['schema-ast'], config: { includeDirectives: false } },
    'test/gql/': {
      preset: 'client',
      config: { scalars: { DateTime: 'string', File: 'File' }, enumsAsTypes: true, useTypeImports: true },
      presetConfig: { fragmentMasking: false },
    },
  },
};

export default config;
