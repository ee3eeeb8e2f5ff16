// Expected failures of the task domain. Each becomes a member of a GraphQL result union
// (and a REST status); anything else is unexpected and stays masked.
import type { TaskStatus } from '../generated/prisma/enums.ts';

export class TaskError extends Error {
  override name = 'TaskError';
}

export class WrongTaskIdFormat extends TaskError {
  override name = 'WrongTaskIdFormat';
  constructor(id: string) {
    super(`"${id.length > 64 ? `${id.slice(0, 64)}…` : id}" is not a task id (a UUID)`);
  }
}

export class TaskDoesNotExist extends TaskError {
  override name = 'TaskDoesNotExist';
  constructor(id: string) {
    super(`task ${id} does not exist`);
  }
}

export class InvalidTaskState extends TaskError {
  override name = 'InvalidTaskState';
  constructor(
    readonly status: TaskStatus,
    action: string,
  ) {
    super(`cannot ${action} a task that is ${status}`);
  }
}

export class InvalidInput extends TaskError {
  override name = 'InvalidInput';
  constructor(
    message: string,
    readonly field: string | null = null,
  ) {
    super(message);
  }
}

export class InvalidImage extends TaskError {
  override name = 'InvalidImage';
}

export class TooManyTasks extends TaskError {
  override name = 'TooManyTasks';
  constructor(
    readonly limit: number,
    message = `this key already has ${limit} active tasks (CREATED, QUEUED or RUNNING), the most it may hold`,
  ) {
    super(message);
  }
}

export class IdempotencyKeyReused extends TaskError {
  override name = 'IdempotencyKeyReused';
  constructor(readonly taskId: string) {
    super(`this idempotency key was used for a different request within the last 24 hours (task ${taskId}); send a new key with a new request`);
  }
}
