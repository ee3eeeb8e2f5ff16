// Baseline of benchmark (a): raw sharp doing K resizes with `concurrency` images in flight,
// nothing around it (no HTTP, no database, no queue). Run as a child process so that
// nothing else lives in it. Prints one JSON line: { ms, opsPerSec, cpuMs, peakRssMiB }.
import { readFileSync } from 'node:fs';
import sharp from 'sharp';

const [file, countArg, concurrencyArg, widthArg = '720', qualityArg = '80'] = process.argv.slice(2);
const input = readFileSync(file);
const count = Number(countArg);
const concurrency = Number(concurrencyArg);
// Same as the product: no libvips operation cache (it would serve repeats of this very
// input from memory, which no real workload does).
sharp.cache(false);

const resize = () => sharp(input).rotate().resize({ width: Number(widthArg) }).jpeg({ quality: Number(qualityArg) }).toBuffer();

await resize(); // warm-up: loads libvips' codecs
const cpuBefore = process.cpuUsage();
const started = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < count) {
      next++;
      await resize();
    }
  }),
);
const ms = performance.now() - started;
const cpu = process.cpuUsage(cpuBefore);
console.log(
  JSON.stringify({
    ms,
    opsPerSec: (count / ms) * 1000,
    cpuMs: (cpu.user + cpu.system) / 1000,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    concurrency: sharp.concurrency(),
  }),
);
