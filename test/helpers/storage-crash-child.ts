// Run by test/storage.test.ts: starts a put of a stream that never ends, says so on
// stdout, and waits to be killed (SIGKILL: a crash in the middle of a write).
// argv: <JSON of { storage, credentials? }> <key> <bytes to write before hanging>
import { Readable } from 'node:stream';
import { createBlobStore } from '../../src/storage/index.ts';

const [config, key, bytes] = process.argv.slice(2);
const { storage, credentials } = JSON.parse(config);
const store = createBlobStore(storage, { credentials });
let sent = 0;
const body = new Readable({
  read() {
    if (sent >= Number(bytes)) {
      process.stdout.write('written\n');
      return; // never push again, never end
    }
    const chunk = Buffer.alloc(Math.min(64 * 1024, Number(bytes) - sent), 7);
    sent += chunk.length;
    this.push(chunk);
  },
});
store.put(key, body, { contentType: 'application/octet-stream' }).then(
  () => process.stdout.write('finished?!\n'),
  (error) => process.stdout.write(`failed: ${error}\n`),
);
