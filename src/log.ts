// Structured JSON logs (pino); pretty lines when a person watches a terminal.
// Every line about a task carries `taskId`, so one task's story is one grep away.
import pino from 'pino';
import { config } from './config.ts';

export const log = pino({
  level: config.logLevel,
  base: { pid: process.pid },
  // Read per line: ESM evaluates imports before the entry point sets process.title.
  mixin: () => ({ role: process.title }),
  ...(process.stdout.isTTY ? { transport: { target: 'pino-pretty', options: { colorize: true } } } : {}),
});
