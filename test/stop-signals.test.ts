// src/stop-signals.ts: a process forked by the supervisor stops when the supervisor dies,
// even when it died before the process listened for it (still loading its modules).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { until } from './helpers/client.ts';
import { ROOT } from './helpers/service.ts';

const CHILD = path.join(ROOT, 'test/helpers/late-listener-child.ts');
const MIDDLE = `
const { fork } = require('node:child_process');
const child = fork(process.argv[1], [], { stdio: 'inherit' });
child.on('spawn', () => console.log('child pid ' + child.pid));
setInterval(() => {}, 1000);
`;

describe('onStopRequest', () => {
  it("stops a forked process whose supervisor died before it listened ('supervisor gone')", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'silent' };
    delete env.npm_lifecycle_event; // not under npm: only the IPC channel can tell
    const middle = spawn(process.execPath, ['--import', 'tsx', '-e', MIDDLE, CHILD], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    middle.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const pid = Number((await until(async () => /child pid (\d+)/.exec(output), Boolean, 30_000))![1]);
    try {
      await until(async () => output.includes('child started'), Boolean, 30_000);
      middle.kill('SIGKILL');
      await until(async () => output.includes('stop requested'), Boolean, 30_000);
      expect(output).toMatch(/stop requested: supervisor gone/);
    } finally {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
    }
  });
});
