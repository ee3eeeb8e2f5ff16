// An s3rver in a process of its own (see s3rver-process.ts): argv port, directory, bucket.
// Says "listening <port>" once it accepts connections; SIGTERM closes it, and so does its
// parent's death (stdin is a pipe from it: never an orphaned server on a shared machine).
import S3rver from 's3rver';

const [port, directory, bucket] = process.argv.slice(2);
const server = new S3rver({ address: '127.0.0.1', port: Number(port), directory, silent: true, configureBuckets: [{ name: bucket }] });
const { port: listening } = await server.run();
console.log(`listening ${listening}`);
process.stdin.resume();
process.stdin.once('end', () => process.exit(0));
process.once('SIGTERM', async () => {
  server.httpServer?.closeAllConnections();
  await server.close();
  process.exit(0);
});
