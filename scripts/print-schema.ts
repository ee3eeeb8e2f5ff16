import { printSchema, lexicographicSortSchema } from 'graphql';
import { schema } from '../src/graphql/index.ts';
process.stdout.write(printSchema(lexicographicSortSchema(schema)) + '\n');
