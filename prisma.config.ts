// Prisma CLI configuration (Prisma 7 reads the schema path and the datasource URL here).
// At run time the app connects through @prisma/adapter-pg (src/db.ts); migrations are
// applied by src/migrate.ts, since the migrate engine cannot be downloaded here.
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: {
    url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/tasklane',
  },
});
