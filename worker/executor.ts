// A child process of a worker that runs one job at a time, so the worker can stop work
// for real (SIGKILL) on a timeout: libvips' own timeout does not stop every encoder.
// Speaks a tiny IPC protocol: {bytes, params, maxInputPixels} in; progress, then the
// result or an error out.
import { resizeImage, UnsupportedImage, type ResizeParams } from '../src/jobs/image-resize.ts';

process.title = 'tasklane-executor';

export interface ExecutorRequest {
  bytes: Uint8Array;
  params: ResizeParams;
  maxInputPixels: number;
}

export type ExecutorMessage =
  | { type: 'progress'; stage: string; progress: number }
  | { type: 'done'; data: Uint8Array; format: ResizeParams['format']; width: number; height: number }
  | { type: 'error'; permanent: boolean; message: string };

const send = (message: ExecutorMessage) => process.send?.(message);

process.on('message', async (request: ExecutorRequest) => {
  try {
    const result = await resizeImage(request.bytes, request.params, {
      maxInputPixels: request.maxInputPixels,
      onStage: (stage, progress) => send({ type: 'progress', stage, progress }),
    });
    send({ type: 'done', data: result.data, format: result.format, width: result.width, height: result.height });
  } catch (error) {
    send({ type: 'error', permanent: error instanceof UnsupportedImage, message: (error as Error).message });
  }
});

// The worker owns us: when it goes, we go.
process.on('disconnect', () => process.exit(0));
