// The service's own modules in the test's process (no server boot), on a fresh database,
// Redis prefix and blob store (test/helpers/infra.ts): for fast tests of the domain and of
// yoga.fetch. Call it before anything imports src/: the configuration is read on first import.
import { createInfra, type TestInfra } from './infra.ts';

export interface InProcess {
  infra: TestInfra;
  /** Closes this process's Redis and PostgreSQL clients, then removes the infra. */
  dispose(): Promise<void>;
}

export async function inProcess(label: string, env: Record<string, string> = {}): Promise<InProcess> {
  const infra = await createInfra(label);
  Object.assign(process.env, {
    ...infra.storageEnv,
    DATABASE_URL: infra.databaseUrl,
    REDIS_PREFIX: infra.redisPrefix,
    LOG_LEVEL: 'silent',
    ...env,
  });
  const { migrate } = await import('../../src/migrate.ts');
  await migrate(infra.databaseUrl);
  const { loadSigningSecret } = await import('../../src/image-urls.ts');
  await loadSigningSecret();
  return {
    infra,
    async dispose() {
      const { closeRedis } = await import('../../src/redis.ts');
      const { prisma } = await import('../../src/db.ts');
      await closeRedis();
      await prisma.$disconnect();
      await infra.dispose();
    },
  };
}
