// Forked by test/stop-signals.test.ts through a middle process that is then SIGKILLed. It
// asks to hear of stop requests only once its IPC channel has already closed, as a process
// still starting up when its supervisor dies does; it must be told all the same.
import { onStopRequest } from '../../src/stop-signals.ts';

console.log('child started');
const poll = setInterval(() => {
  if (process.connected) return;
  clearInterval(poll);
  onStopRequest((reason) => {
    console.log(`stop requested: ${reason}`);
    process.exit(0);
  });
  setInterval(() => {}, 1000); // stays up until told to stop
}, 20);
