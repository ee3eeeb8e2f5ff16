// Everything that asks a Tasklane process to stop, in one place, so that whatever stops
// `npm start` stops every process of it, gracefully:
//  - SIGTERM (a process manager, npm forwarding it), SIGINT (Ctrl-C, npm forwarding it),
//    SIGHUP (the terminal closed);
//  - for a process forked by the supervisor: the IPC channel closing, i.e. the supervisor
//    is gone, whatever killed it (even SIGKILL, which nobody can forward);
//  - for a process run by npm (`npm start`, `npm run api|worker`): npm going away. npm 11
//    forwards only SIGINT and SIGTERM to its child and dies of anything else (SIGHUP,
//    SIGKILL) without telling it, leaving it orphaned; the orphan sees its parent pid
//    change. (The npm scripts `exec` node, so npm is the parent, not a shell: a shell
//    would die of SIGTERM without passing it on, and outlive npm on SIGHUP.)
//    Only under npm: started any other way (nohup, a shell script that exits), outliving
//    the parent may be the point.
import { log } from './log.ts';

/** How often a process run by npm checks that npm is still its parent. */
const PARENT_CHECK_MS = 500;

/** npm sets this for the scripts it runs (and so for their children, which have their IPC channel besides). */
const startedByNpm = (): boolean => Boolean(process.env.npm_lifecycle_event);

export type StopReason = NodeJS.Signals | 'supervisor gone' | 'parent gone';

/**
 * Calls `stop` (possibly more than once: it must be idempotent) when this process is asked
 * to stop.
 */
export function onStopRequest(stop: (reason: StopReason) => void): void {
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => stop(signal));
  if (process.send) {
    const gone = () => {
      log.warn('the supervisor is gone (IPC channel closed); stopping');
      stop('supervisor gone');
    };
    // The channel may have closed while this process was still starting, before anyone
    // listened: 'disconnect' is then past, but `connected` tells.
    if (process.connected) process.on('disconnect', gone);
    else setImmediate(gone);
  }
  if (startedByNpm()) {
    const parent = process.ppid;
    const timer = setInterval(() => {
      if (process.ppid === parent) return;
      clearInterval(timer);
      log.warn({ parent }, 'the parent process is gone; stopping');
      stop('parent gone');
    }, PARENT_CHECK_MS);
    timer.unref();
  }
}

