// The task lifecycle: which statuses exist and which moves between them are allowed.
//
//   CREATED ──run──▶ QUEUED ──claim──▶ RUNNING ──complete──▶ DONE
//                      ▲                  │ └─────fail─────▶ FAILED
//                      └─ retry, handBack, ─┘
//                         waitForStore
//   any non-DELETED ──delete──▶ DELETED
//
// TRANSITIONS decides every move: each is a conditional UPDATE (… WHERE status = ANY(<from>),
// SET status = <to>) in src/tasks/store.ts, so concurrent or repeated calls can never move
// a task backwards or resurrect it. The claim runs inside tasklane_claim_task (a PL/pgSQL
// function of the migrations), which spells out the same QUEUED → RUNNING; test/lifecycle.test.ts
// checks every transition, that one included, against this table.
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
  fail: { from: ['RUNNING'], to: 'FAILED' },
  /** A transient failure: queued again after a backoff, the delivery counted. */
  retry: { from: ['RUNNING'], to: 'QUEUED' },
  /** A worker shutting down gives its delivery back: queued again at once, not counted. */
  handBack: { from: ['RUNNING'], to: 'QUEUED' },
  /** The blob store is down for everyone: queued again after a backoff, not counted. */
  waitForStore: { from: ['RUNNING'], to: 'QUEUED' },
  delete: { from: ['CREATED', 'QUEUED', 'RUNNING', 'DONE', 'FAILED'], to: 'DELETED' },
} as const satisfies Record<string, Transition>;

export interface Transition {
  from: readonly TaskStatus[];
  to: TaskStatus;
}

export function isFinal(status: TaskStatus): boolean {
  return FINAL_STATUSES.includes(status);
}

/** Exponential backoff with full jitter for the n-th retry (n ≥ 1), capped at 30 s. */
export function retryDelayMs(attempt: number, baseMs = 500): number {
  const ceiling = Math.min(30_000, baseMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}
