// Live updates. The stream logic is the domain's (src/tasks/watch.ts); here it becomes
// GraphQL: refusals before the first event are GraphQL errors with a code.
import { watchTask, watchTasks } from '../tasks/watch.ts';
import type { TaskRow } from '../tasks/service.ts';
import { builder } from './builder.ts';
import { TaskStatusEnum } from './enums.ts';
import { exposeDomainError } from '../http/edge.ts';
import { TaskRef } from './task.ts';

async function exposing<T>(start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    throw exposeDomainError(error) ?? error;
  }
}

builder.subscriptionFields((t) => ({
  taskUpdated: t.field({
    type: TaskRef,
    description: 'First the current state, then every change; completes after DONE, FAILED or DELETED',
    args: { id: t.arg.id({ required: true }) },
    subscribe: (_, { id }, { caller }) => exposing(() => watchTask(caller, id)),
    resolve: (task: TaskRow) => task,
  }),
  tasksUpdated: t.field({
    type: TaskRef,
    description: "Every change of the caller's tasks (optionally only those now in `status`), for dashboards",
    args: { status: t.arg({ type: [TaskStatusEnum] }) },
    subscribe: (_, { status }, { caller }) => exposing(() => watchTasks(caller, status)),
    resolve: (task: TaskRow) => task,
  }),
}));
