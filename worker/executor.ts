// A child process of a worker that runs one job at a time, so the worker can stop work
// for real (SIGKILL) on a timeout: libvips' own timeout does not stop every encoder.
// Speaks a tiny IPC protocol: {bytes, params, maxInputPixels, maxOutputPixels} in; progress, then the
// result or an error out.
import { InvalidResizeParams, resizeImage, UnsupportedImage, type ResizeParams } from '../src/jobs/image-resize.ts';

process.title = 'tasklane-executor';

export interface ExecutorRequest {
  bytes: Uint8Array;
  params: ResizeParams;
  maxInputPixels: number;
  maxOutputPixels: number;
}

export type ExecutorMessage =
  | { type: 'ready'; pid: number }
  | { type: 'progress'; stage: string; progress: number }
  | { type: 'done'; data: Uint8Array; format: ResizeParams['format']; width: number; height: number }
  | { type: 'error'; permanent: boolean; message: string };

const send = (message: ExecutorMessage) => process.send?.(message);

/**
 * Progress points earlier than this after the job's start are not sent: the worker writes
 * progress at most every 100 ms after its claim and would drop them, and for a small image
 * (done in a few ms) they were most of the IPC traffic.
 */
const QUIET_START_MS = 50;

process.on('message', async (request: ExecutorRequest) => {
  const started = performance.now();
  try {
    const result = await resizeImage(request.bytes, request.params, {
      maxInputPixels: request.maxInputPixels,
      maxOutputPixels: request.maxOutputPixels,
      onStage: (stage, progress) => {
        if (performance.now() - started >= QUIET_START_MS) send({ type: 'progress', stage, progress });
      },
    });
    send({ type: 'done', data: result.data, format: result.format, width: result.width, height: result.height });
  } catch (error) {
    // Bad bytes or bad parameters fail the same way every time: never worth a retry.
    const permanent = error instanceof UnsupportedImage || error instanceof InvalidResizeParams;
    send({ type: 'error', permanent, message: (error as Error).message });
  }
});

// The worker owns us: when it goes, we go. Signals meant for the whole process group
// (Ctrl-C in a terminal, the terminal closing, a SIGTERM fan-out) are the worker's to handle: it decides
// whether the job finishes or is handed back, and kills us if need be.
process.on('disconnect', () => process.exit(0));
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('SIGHUP', () => {});

// Only now can a job be received: the pool sends nothing before this, so JOB_TIMEOUT_MS
// never counts our start-up (loading sharp takes a while on a busy machine).
send({ type: 'ready', pid: process.pid });
