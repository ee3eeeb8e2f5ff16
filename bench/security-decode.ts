// Child process for bench/security.ts: resizes a pixel bomb the way an executor does,
// with or without the pixel limit, and prints {ms, peakRssMiB, refused} as JSON. Its own
// process, so that the peak memory is the decode's alone (and sharp.block, which our job
// module sets for the whole process, does not disturb the bench process).
import { readFileSync } from 'node:fs';
import { resizeImage } from '../src/jobs/image-resize.ts';

const [file, limit] = process.argv.slice(2);
const bytes = readFileSync(file);
const peak = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
const before = peak();
const started = performance.now();
let refused: string | null = null;
try {
  await resizeImage(bytes, { width: 12_000, height: null, fit: 'COVER', format: 'PNG', quality: null, withoutEnlargement: false }, {
    maxInputPixels: Number(limit),
    maxOutputPixels: Infinity, // the bench measures decoding; the output limit would refuse first without the input limit
  });
} catch (error) {
  refused = (error as Error).message;
}
const ms = performance.now() - started;
console.log(JSON.stringify({ ms, peakRssMiB: peak(), growthMiB: peak() - before, refused }));
