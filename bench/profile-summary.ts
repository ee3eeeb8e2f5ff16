// Summarises V8 .cpuprofile files (from --cpu-prof): top functions by self time, and by
// package/file, skipping the first `--skip-ms` of the profile (start-up, TypeScript loading).
//   node --import tsx bench/profile-summary.ts [--skip-ms=3000] [--top=25] file.cpuprofile…
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const skipMs = Number(args.find((a) => a.startsWith('--skip-ms='))?.split('=')[1] ?? 0);
const top = Number(args.find((a) => a.startsWith('--top='))?.split('=')[1] ?? 25);
const files = args.filter((a) => !a.startsWith('--'));

function where(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.startsWith('node:')) return url;
  const src = url.match(/\/(src|worker|bench)\/.*$/);
  return src ? src[0].slice(1) : url || '(native)';
}

for (const file of files) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  const byPackage = new Map<string, number>();
  let t = 0;
  let total = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] / 1000;
    t += delta;
    if (t < skipMs) return;
    const node = byId.get(id)!;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idle += delta;
      return;
    }
    total += delta;
    const key = `${functionName || '(anonymous)'} ${where(url)}:${lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + delta);
    const pkg = functionName === '(garbage collector)' ? '(gc)' : functionName === '(program)' ? '(program)' : where(url);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + delta);
  });
  console.log(`\n${file}: ${total.toFixed(0)} ms busy, ${idle.toFixed(0)} ms idle (after ${skipMs} ms)`);
  console.log('  by package/file:');
  for (const [key, ms] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    console.log(`    ${ms.toFixed(0).padStart(7)} ms ${((ms / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
  }
  console.log('  by function (self):');
  for (const [key, ms] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`    ${ms.toFixed(0).padStart(7)} ms ${((ms / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
  }
}
