// Which Node versions Tasklane supports, and that package.json's `engines` says so honestly:
// the current LTS lines 22 and 24 from the first release every runtime dependency accepts,
// plus 20 while our machines still run it (end-of-life; .ci/run runs the suite on 20 and 24).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/service.ts';

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
const engines: string = pkg.engines.node;

/** The lowest version of `major` that `range` admits, or null. */
function lowest(range: string, major: number): string | null {
  const firsts = range.split('||').map((alternative) => semver.minVersion(`${alternative.trim()} >=${major}.0.0 <${major + 1}.0.0`));
  const admitted = firsts.filter((v): v is semver.SemVer => v !== null && semver.satisfies(v, range)).map(String);
  return admitted.sort(semver.compare)[0] ?? null;
}

describe('package.json engines', () => {
  it('admits Node 22 and 24, and the Node running these tests', () => {
    expect(semver.satisfies('22.99.0', engines)).toBe(true);
    expect(semver.satisfies('24.0.0', engines)).toBe(true);
    expect(semver.satisfies(process.versions.node, engines)).toBe(true);
    expect(semver.satisfies('21.7.0', engines)).toBe(false); // odd lines are never LTS
    expect(semver.satisfies('18.20.0', engines)).toBe(false);
  });

  it('admits no 22 or 24 release that a runtime dependency refuses', () => {
    const refusals: string[] = [];
    for (const major of [22, 24]) {
      const first = lowest(engines, major);
      expect(first, `engines admits some ${major}.x`).not.toBeNull();
      for (const [where, entry] of Object.entries<{ dev?: boolean; os?: string[]; cpu?: string[]; engines?: { node?: string } }>(lock.packages)) {
        const wanted = entry.engines?.node;
        if (!where || entry.dev || !wanted || !semver.validRange(wanted)) continue;
        // Another platform's binary (sharp's @img/sharp-win32-ia32 wants ^20.9.0) is never installed with us.
        if ((entry.os && !entry.os.includes(process.platform)) || (entry.cpu && !entry.cpu.includes(process.arch))) continue;
        if (!semver.satisfies(first!, wanted)) refusals.push(`${where.replace(/^.*node_modules\//, '')} wants ${wanted}, engines admits ${first}`);
      }
    }
    expect(refusals).toEqual([]);
  });
});
