// `npm run key -- create <name>` prints a new key alone on the last line of stdout.
// `npm run key -- revoke <name>` revokes every key of that name at once, open
// subscriptions included.
import { config } from '../config.ts';
import { prisma } from '../db.ts';
import { migrate } from '../migrate.ts';
import { blobStore } from '../blobs.ts';
import { closeRedis } from '../redis.ts';
import { createKey, revokeKeys } from '../tasks/keys.ts';

const [command, name] = process.argv.slice(2);
const usage = 'usage: npm run key -- create <name> | revoke <name>';

async function main(): Promise<number> {
  if (!name || (command !== 'create' && command !== 'revoke')) {
    console.error(usage);
    return 64; // EX_USAGE
  }
  await migrate(config.databaseUrl, { store: blobStore() });
  if (command === 'create') {
    const key = await createKey(name);
    console.error(`Created an API key for "${name}". It is shown once; keep it secret:`);
    console.log(key);
  } else {
    const count = await revokeKeys(name);
    console.log(`revoked ${count} key(s) of "${name}"`);
  }
  return 0;
}

main()
  .then(async (code) => {
    await closeRedis();
    await prisma.$disconnect();
    process.exit(code);
  })
  .catch((error) => {
    console.error(`error: ${(error as Error).message}`);
    process.exit(1);
  });
