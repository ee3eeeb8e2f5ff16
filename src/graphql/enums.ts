import { IMAGE_FORMATS, RESIZE_FITS } from '../jobs/image-resize.ts';
import { TASK_STATUSES } from '../tasks/lifecycle.ts';
import { builder } from './builder.ts';

export const TaskStatusEnum = builder.enumType('TaskStatus', {
  description: 'CREATED → QUEUED → RUNNING → DONE | FAILED; any of them → DELETED',
  values: TASK_STATUSES,
});
export const JobDefinitionEnum = builder.enumType('JobDefinition', { values: ['IMAGE_RESIZE'] as const });
export const ResizeFitEnum = builder.enumType('ResizeFit', {
  description: 'How the image fits width x height (sharp/CSS object-fit semantics)',
  values: RESIZE_FITS,
});
export const ImageFormatEnum = builder.enumType('ImageFormat', { values: IMAGE_FORMATS });
