// Shared subscriptions: subscribers of one owner that sent the same subscription (same
// document, operation and variables) share ONE source stream in this process. The task is
// watched, re-read and the selection executed once per change, however many watch it;
// each subscriber then only receives the same result object (and yoga, graphql-ws and
// our plugins do their per-subscriber part: error masking, metrics, serialising, writing).
//
// Invariants, per subscriber, as without sharing:
// - `taskUpdated`: the first event is the task's current state. A subscriber that joins a
//   running group first gets the group's newest result: the group has listened since before
//   its first read, so every change newer than that result still reaches the group.
// - `tasksUpdated`: changes from the subscription on (nothing is replayed).
// - versions only increase; the stream completes, or fails (e.g. KeyRevoked), for everyone.
// - a result identical to the one before it (only unselected fields changed) is not repeated.
// Subscribers of different owners never share (the owner is part of the key).
import type { ExecutionArgs, ExecutionResult } from 'graphql';
import { getOperationAST, GraphQLError, type DocumentNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Context } from '../graphql/builder.ts';
import { subscriptionStreams } from '../metrics.ts';

type Result = ExecutionResult;
type SubscribeFn = (args: ExecutionArgs) => unknown;

/**
 * The most results a subscriber may have waiting (a client that stopped reading). Beyond,
 * its stream ends with an error rather than holding memory for it. `taskUpdated`
 * subscribers never hold more than one: a newer state replaces a waiting one.
 */
export const MAX_PENDING_RESULTS = 1000;

/** What a dropped subscriber gets: a GraphQL error with a code (not masked). */
const slowSubscriber = () =>
  new GraphQLError(`this subscriber fell ${MAX_PENDING_RESULTS} events behind and was dropped; subscribe again`, {
    extensions: { code: 'SUBSCRIBER_TOO_SLOW' },
  });

const documentIds = new WeakMap<DocumentNode, number>();
let nextDocumentId = 0;
function keyOf(args: ExecutionArgs, owner: string): string {
  // yoga's parse cache hands out one DocumentNode per distinct query text, so identity is
  // a good key; a cache miss only costs a second group, never a wrong one.
  let id = documentIds.get(args.document);
  if (id === undefined) documentIds.set(args.document, (id = ++nextDocumentId));
  return JSON.stringify([owner, id, args.operationName ?? null, args.variableValues ?? null]);
}

/** One subscriber's view of a group: an async iterator over the group's results. */
class Member implements AsyncIterableIterator<Result> {
  private pending: Result[] = [];
  private waiting: ((step: IteratorResult<Result>) => void) | null = null;
  private failWaiting: ((error: unknown) => void) | null = null;
  private ended = false;
  private error: unknown = null;

  constructor(
    private readonly group: Group,
    /** Only the newest result matters (taskUpdated): a newer one replaces a waiting one. */
    private readonly latestOnly: boolean,
  ) {}

  push(result: Result) {
    if (this.ended) return;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = this.failWaiting = null;
      resolve({ value: result, done: false });
    } else if (this.latestOnly && this.pending.length) this.pending[0] = result;
    else if (this.pending.length >= MAX_PENDING_RESULTS) this.fail(slowSubscriber());
    else this.pending.push(result);
  }

  /** The group is over: deliver what is pending, then end (or fail). */
  finish(error: unknown = null) {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.group.leave(this);
    if (this.waiting) {
      const [resolve, reject] = [this.waiting, this.failWaiting!];
      this.waiting = this.failWaiting = null;
      this.error = null; // thrown once, then done
      if (error) reject(error);
      else resolve({ value: undefined, done: true });
    }
  }

  private fail(error: unknown) {
    this.pending = [];
    this.finish(error);
  }

  next(): Promise<IteratorResult<Result>> {
    if (this.pending.length) return Promise.resolve({ value: this.pending.shift()!, done: false });
    if (this.ended) {
      const error = this.error;
      this.error = null; // thrown once, then done
      return error ? Promise.reject(error) : Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.failWaiting = reject;
    });
  }

  /** The subscriber went away (client disconnected, unsubscribed). */
  return(): Promise<IteratorResult<Result>> {
    this.pending = [];
    this.finish();
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(error: unknown): Promise<IteratorResult<Result>> {
    this.return();
    return Promise.reject(error);
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

const groups = new Map<string, Group>();

/** One source stream and its subscribers. */
class Group {
  private members = new Set<Member>();
  /** The newest result (replayed to joiners when `replayLatest`). */
  private latest: Result | null = null;
  private source: AsyncIterator<Result> | null = null;
  private over = false;
  /** Resolves when the source is subscribed: with null, or with the refusal (an error result). */
  readonly started: Promise<Result | null>;

  constructor(
    private readonly key: string,
    private readonly replayLatest: boolean,
    subscribe: () => Promise<unknown>,
  ) {
    subscriptionStreams.inc();
    this.started = subscribe().then((outcome) => {
      if (!isAsyncIterable(outcome)) {
        this.end(); // refused before streaming (bad id, unknown task…): nobody shares that
        return outcome as Result;
      }
      this.source = outcome[Symbol.asyncIterator]();
      void this.pump();
      return null;
    }, (error: unknown) => {
      this.end();
      throw error;
    });
  }

  join(): Member {
    const member = new Member(this, this.replayLatest);
    this.members.add(member);
    if (this.replayLatest && this.latest) member.push(this.latest);
    return member;
  }

  leave(member: Member) {
    this.members.delete(member);
    // The last subscriber gone: stop watching (the source's return() unsubscribes it).
    if (this.members.size === 0 && !this.over) {
      this.end();
      void this.source?.return?.();
    }
  }

  private end() {
    if (this.over) return;
    subscriptionStreams.dec();
    this.over = true;
    if (groups.get(this.key) === this) groups.delete(this.key);
  }

  private async pump() {
    let failure: unknown = null;
    let previous = '';
    try {
      for (;;) {
        const step = await this.source!.next();
        if (step.done || this.over) break;
        // A change of fields the subscription did not select (e.g. progress, when only
        // `status` is asked for) gives the same result again: subscribers get it once.
        const serialized = JSON.stringify(step.value);
        if (serialized === previous) continue;
        previous = serialized;
        this.latest = step.value;
        for (const member of this.members) member.push(step.value);
      }
    } catch (error) {
      failure = error;
    }
    this.end(); // before telling the members: a new subscriber must start a new group
    for (const member of [...this.members]) member.finish(failure);
  }

  get joinable() {
    return !this.over;
  }
}

/** Whether an execution's outcome is a stream (a subscription that started) rather than one result. */
export function isAsyncIterable(value: unknown): value is AsyncIterable<Result> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

/** Shares the source stream of identical subscriptions of one owner (see above). */
export function sharedSubscriptions(): Plugin<Context> {
  return {
    onSubscribe({ args, subscribeFn, setSubscribeFn }) {
      const owner = (args.contextValue as Context | undefined)?.caller?.owner;
      if (!owner) return; // not ours to share (no caller: refused later anyway)
      const operation = getOperationAST(args.document, args.operationName);
      const field = operation?.selectionSet.selections.length === 1 ? operation.selectionSet.selections[0] : null;
      const replayLatest = field?.kind === 'Field' && field.name.value === 'taskUpdated';
      setSubscribeFn(async (subscribeArgs: ExecutionArgs) => {
        const key = keyOf(subscribeArgs, owner);
        let group = groups.get(key);
        if (!group?.joinable) {
          const original = subscribeFn as SubscribeFn;
          group = new Group(key, replayLatest, async () => original(subscribeArgs));
          groups.set(key, group);
        }
        const refused = await group.started;
        if (refused) return refused;
        if (!group.joinable) {
          // It ended while we waited for it to start (a final state, a revocation): the
          // answer for us is a fresh subscription of our own, which sees the same truth.
          return (subscribeFn as SubscribeFn)(subscribeArgs);
        }
        return group.join();
      });
    },
  };
}
