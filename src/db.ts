// The one Prisma client of a process (Rust-free client + node-postgres adapter).
import { PrismaPg } from '@prisma/adapter-pg';
import { config } from './config.ts';
import { PrismaClient } from './generated/prisma/client.ts';

export const prisma = new PrismaClient({
  adapter: new PrismaPg({
    connectionString: config.databaseUrl,
    max: 10,
    // Fail fast instead of hanging when PostgreSQL is unreachable.
    connectionTimeoutMillis: 5000,
    // A statement that waits this long on a dead connection is abandoned.
    query_timeout: 30_000,
  }),
});

export type Db = typeof prisma;
