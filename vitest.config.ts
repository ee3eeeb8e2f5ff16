import { defineConfig } from 'vitest/config';

export default defineConfig({
  // One graphql module for everyone: Pothos loads its CommonJS build, so must the tests
  // (two copies of graphql refuse each other's types).
  resolve: { alias: { graphql: 'graphql/index.js' } },
  test: {
    include: ['test/**/*.test.ts'],
    // TEST_STORAGE=s3 runs every test on an S3 blob store (one s3rver for the run) instead of disk.
    globalSetup: ['test/helpers/global-setup.ts'],
    // End-to-end files start real processes; two at a time suits a 2-core machine.
    maxWorkers: 2,
    fileParallelism: true,
    testTimeout: 60_000,
    hookTimeout: 300_000, // starting real processes takes minutes on a loaded 2-core machine
    pool: 'forks',
  },
});
