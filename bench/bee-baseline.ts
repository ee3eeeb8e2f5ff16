// Baseline of benchmark (c): raw bee-queue no-op jobs, a producer queue and a worker queue
// (their own Redis connections) in this one process, nothing else. Prints one JSON line:
// { jobs, ms, jobsPerSec, cpuMs }.
import BeeQueue from 'bee-queue';

const [prefix, countArg, concurrencyArg] = process.argv.slice(2);
const count = Number(countArg);
const concurrency = Number(concurrencyArg);
const redis = { host: '127.0.0.1', port: 6379 };
const settings = { prefix, redis, getEvents: false, sendEvents: false, storeJobs: false, removeOnSuccess: true, removeOnFailure: true, activateDelayedJobs: false };
const producer = new BeeQueue('noop', { ...settings, isWorker: false });
const worker = new BeeQueue('noop', { ...settings, isWorker: true });
await Promise.all([producer.ready(), worker.ready()]);

let done = 0;
let finish!: () => void;
const finished = new Promise<void>((resolve) => (finish = resolve));
worker.process(concurrency, async () => {
  if (++done === count) finish();
});

const cpuBefore = process.cpuUsage();
const started = performance.now();
// Saved as the API does it: one job at a time per request, 16 requests in flight.
let next = 0;
await Promise.all(
  Array.from({ length: 16 }, async () => {
    while (next < count) {
      next++;
      await producer.createJob({ taskId: `job-${next}` }).setId(`job-${next}`).save();
    }
  }),
);
await finished;
const ms = performance.now() - started;
const cpu = process.cpuUsage(cpuBefore);
console.log(JSON.stringify({ jobs: count, ms, jobsPerSec: (count / ms) * 1000, cpuMs: (cpu.user + cpu.system) / 1000 }));
await Promise.all([producer.destroy(), worker.close()]);
process.exit(0);
