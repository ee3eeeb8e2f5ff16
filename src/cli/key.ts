// `npm run key -- create <name>` prints a new key alone on the last line of stdout.
// `npm run key -- revoke <name>` revokes every key of that name at once, open
// subscriptions included. `npm run key -- secret <name>` prints the name's callback signing
// secret (whsec_…) alone on the last line of stdout.
import { config } from '../config.ts';
import { prisma } from '../db.ts';
import { migrate } from '../migrate.ts';
import { blobStore } from '../blobs.ts';
import { closeRedis } from '../redis.ts';
import { callbackSecret, createKey, revokeKeys } from '../tasks/keys.ts';

const [command, name] = process.argv.slice(2);
const usage = 'usage: npm run key -- create <name> | revoke <name> | secret <name>';

async function main(): Promise<number> {
  if (!name || !['create', 'revoke', 'secret'].includes(command)) {
    console.error(usage);
    return 64; // EX_USAGE
  }
  await migrate(config.databaseUrl, { store: blobStore() });
  if (command === 'create') {
    const key = await createKey(name);
    console.error(`Created an API key for "${name}". It is shown once; keep it secret:`);
    console.log(key);
  } else if (command === 'secret') {
    const secret = await callbackSecret(name);
    if (!secret) {
      console.error(`error: no API key named "${name}"`);
      return 1;
    }
    console.error(`The callback signing secret of "${name}" (verify the webhook-signature of its callbacks with it):`);
    console.log(secret);
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
