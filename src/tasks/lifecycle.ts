// The task lifecycle: which statuses exist and which moves between them are allowed.
//
//   CREATED ──run──▶ QUEUED ──claim──▶ RUNNING ──▶ DONE
//                      ▲                  │ └────▶ FAILED
//                      └── retry (transient) ─┘
//   any non-DELETED ──delete──▶ DELETED
//
// Every move is a conditional UPDATE (… WHERE status = ANY(<from>)) in src/tasks/store.ts,
// so concurrent or repeated calls can never move a task backwards or resurrect it.
import type { TaskStatus } from '../generated/prisma/enums.ts';

export const TASK_STATUSES = ['CREATED', 'QUEUED', 'RUNNING', 'DONE', 'FAILED', 'DELETED'] as const satisfies readonly TaskStatus[];

/** Statuses that count against a key's quota of active tasks. */
export const ACTIVE_STATUSES: TaskStatus[] = ['CREATED', 'QUEUED', 'RUNNING'];
/** Statuses a task never leaves (DELETED aside, which any non-DELETED task may enter). */
export const FINAL_STATUSES: TaskStatus[] = ['DONE', 'FAILED', 'DELETED'];

export const TRANSITIONS = {
  run: { from: ['CREATED'], to: 'QUEUED' },
  claim: { from: ['QUEUED'], to: 'RUNNING' },
  complete: { from: ['RUNNING'], to: 'DONE' },
  fail: { from: ['RUNNING', 'QUEUED'], to: 'FAILED' },
  retry: { from: ['RUNNING'], to: 'QUEUED' },
  delete: { from: ['CREATED', 'QUEUED', 'RUNNING', 'DONE', 'FAILED'], to: 'DELETED' },
} as const satisfies Record<string, { from: TaskStatus[]; to: TaskStatus }>;

export function isFinal(status: TaskStatus): boolean {
  return FINAL_STATUSES.includes(status);
}

/** Exponential backoff with full jitter for the n-th retry (n ≥ 1), capped at 30 s. */
export function retryDelayMs(attempt: number, baseMs = 500): number {
  const ceiling = Math.min(30_000, baseMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}
