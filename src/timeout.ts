/** Error of `withTimeout`: the work did not settle in time (it may still be going on). */
export class TimedOut extends Error {
  override name = 'TimedOut';
}

/**
 * `work`, or a rejection with TimedOut after `ms` — for promises that cannot be cancelled
 * (a library call waiting on a dead connection). The timer never keeps the process alive.
 */
export function withTimeout<T>(work: Promise<T>, ms: number, what = 'no answer'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimedOut(`${what} in ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
