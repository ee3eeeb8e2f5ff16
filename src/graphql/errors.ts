// Expected errors as GraphQL types (members of the result unions, behind the `Error`
// interface). Their `extensions.code` where they occur outside a union (subscriptions,
// list arguments): src/http/edge.ts.
import {
  IdempotencyKeyReused,
  InvalidImage,
  InvalidInput,
  InvalidTaskState,
  TaskDoesNotExist,
  type TaskError,
  TooManyTasks,
  WrongTaskIdFormat,
} from '../tasks/errors.ts';
import { builder } from './builder.ts';
import { TaskStatusEnum } from './enums.ts';

export const ErrorInterface = builder.interfaceRef<TaskError>('Error').implement({
  description: 'An expected failure, returned as a member of a result union',
  fields: (t) => ({ message: t.exposeString('message') }),
});

const simpleError = (cls: typeof WrongTaskIdFormat | typeof TaskDoesNotExist | typeof InvalidImage, description: string) =>
  builder.objectType(cls, {
    name: cls.name,
    description,
    interfaces: [ErrorInterface],
    isTypeOf: (value) => value instanceof cls,
    fields: () => ({}),
  });

simpleError(WrongTaskIdFormat, 'The id is not a UUID');
simpleError(TaskDoesNotExist, 'No task with this id belongs to the caller');
simpleError(InvalidImage, 'Not a supported raster image, unreadable, or over the pixel or size limit');

builder.objectType(InvalidTaskState, {
  name: 'InvalidTaskState',
  description: 'The task is not in a state that allows this operation',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof InvalidTaskState,
  fields: (t) => ({ status: t.field({ type: TaskStatusEnum, resolve: (error) => error.status }) }),
});

builder.objectType(InvalidInput, {
  name: 'InvalidInput',
  description: 'An argument is out of range; `field` names it (e.g. "resize.width")',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof InvalidInput,
  fields: (t) => ({ field: t.exposeString('field', { nullable: true }) }),
});

builder.objectType(TooManyTasks, {
  name: 'TooManyTasks',
  description: "The key's quota of active (CREATED, QUEUED, RUNNING) tasks is full",
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof TooManyTasks,
  fields: (t) => ({ limit: t.exposeInt('limit') }),
});

builder.objectType(IdempotencyKeyReused, {
  name: 'IdempotencyKeyReused',
  description: 'The idempotency key was used within 24 h for a different request; `taskId` is the task it made',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof IdempotencyKeyReused,
  fields: (t) => ({ taskId: t.exposeID('taskId') }),
});
