// A disk that stops taking writes, for the disk blob store's fault tests. chmod does not stop
// root, so as root the store gets a small file system of its own (a tmpfs) that can be
// remounted read-only or filled up; a user that is not root makes a directory read-only
// with chmod. Root without the right to mount (a container without CAP_SYS_ADMIN) can do
// neither: those tests are skipped, saying so.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const isRoot = process.getuid?.() === 0;

/** Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN). */
export const canMount = (() => {
  if (!isRoot) return false;
  const probe = path.join(os.tmpdir(), `tasklane-mount-probe-${process.pid}`);
  try {
    execFileSync('mkdir', ['-p', probe]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe]);
    return true;
  } catch {
    return false;
  } finally {
    execFileSync('rm', ['-rf', probe]);
  }
})();

/** How a directory can be made unwritable here: a read-only remount, chmod, or not at all. */
export const readOnlyMethod: 'remount' | 'chmod' | null = canMount ? 'remount' : isRoot ? null : 'chmod';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface SmallDisk {
  /** The mount point (a fresh, empty directory). */
  dir: string;
  /** Remounts read-only; retried while a file is open for writing (EBUSY), as an admin would. */
  readOnly(): Promise<void>;
  readWrite(): Promise<void>;
  /** Writes a ballast file until the file system is full (ENOSPC). */
  fill(): Promise<void>;
  /** Removes the ballast. */
  free(): Promise<void>;
  /** Unmounts (lazily, so a process still inside cannot keep it) and removes the directory. */
  close(): Promise<void>;
}

/** A tmpfs of `bytes` mounted on a new directory under the temp directory (needs canMount). */
export async function smallDisk(bytes: number): Promise<SmallDisk> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklane-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir]);
  const ballast = path.join(dir, 'ballast');
  let mounted = true;
  const remount = async (mode: 'ro' | 'rw') => {
    for (let tries = 0; ; tries++) {
      try {
        execFileSync('mount', ['-o', `remount,${mode}`, dir], { stdio: 'pipe' });
        return;
      } catch (error) {
        if (tries >= 200 || !String((error as { stderr?: Buffer }).stderr ?? '').includes('busy')) throw error;
        await sleep(25); // a write in progress: it ends within a moment
      }
    }
  };
  return {
    dir,
    readOnly: () => remount('ro'),
    readWrite: () => remount('rw'),
    async fill() {
      const handle = await fs.open(ballast, 'a');
      const chunk = Buffer.alloc(64 * 1024);
      try {
        for (;;) {
          const { bytesWritten } = await handle.write(chunk);
          if (bytesWritten < chunk.length) continue; // the last pages: the next write says ENOSPC
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      } finally {
        await handle.close();
      }
    },
    free: () => fs.rm(ballast, { force: true }),
    async close() {
      if (mounted) execFileSync('umount', ['-l', dir]);
      mounted = false;
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
