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
// --under=name: only samples with a frame of that function on the stack (its self-time breakdown).
const under = args.find((a) => a.startsWith('--under='))?.split('=')[1];

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
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  // Inclusive time of our own functions (src/, worker/) and of a few library entry points.
  const inclusive = new Map<string, number>();
  const ours = (url: string) => /\/(src|worker)\//.test(url) && !url.includes('node_modules') && !url.includes('/generated/');
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
    if (under) {
      let found = false;
      for (let at: number | undefined = id; at !== undefined && !found; at = parent.get(at)) found = byId.get(at)!.callFrame.functionName === under;
      if (!found) return;
    }
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idle += delta;
      return;
    }
    total += delta;
    const key = `${functionName || '(anonymous)'} ${where(url)}:${lineNumber + 1}`;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      if (!ours(frame.url) || !frame.functionName) continue;
      const name = `${frame.functionName} ${where(frame.url)}`;
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + delta);
    }
    self.set(key, (self.get(key) ?? 0) + delta);
    const pkg = functionName === '(garbage collector)' ? '(gc)' : functionName === '(program)' ? '(program)' : where(url);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + delta);
  });
  console.log(`\n${file}: ${total.toFixed(0)} ms busy, ${idle.toFixed(0)} ms idle (after ${skipMs} ms)`);
  console.log('  by package/file:');
  for (const [key, ms] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    console.log(`    ${ms.toFixed(0).padStart(7)} ms ${((ms / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
  }
  console.log('  our functions (inclusive, synchronous part only):');
  for (const [key, ms] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    console.log(`    ${ms.toFixed(0).padStart(7)} ms ${((ms / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
  }
  console.log('  by function (self):');
  for (const [key, ms] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`    ${ms.toFixed(0).padStart(7)} ms ${((ms / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
  }
}
