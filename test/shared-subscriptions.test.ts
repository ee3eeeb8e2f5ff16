// The sharing of identical subscriptions (src/http/shared-subscriptions.ts), driven through
// its envelop hook with sources this test controls: who shares, what a late joiner sees,
// a subscriber that stops reading, errors, and the end of the source. (End to end, with a
// real deployment, in test/subscriptions.test.ts "identical subscriptions".)
import { parse, type ExecutionArgs, type ExecutionResult } from 'graphql';
import { Repeater } from '@repeaterjs/repeater';
import { describe, expect, it } from 'vitest';
import { MAX_PENDING_RESULTS, sharedSubscriptions } from '../src/http/shared-subscriptions.ts';

const TASK = parse('subscription ($id: ID!) { taskUpdated(id: $id) { id version } }');
const TASKS = parse('subscription { tasksUpdated { id version } }');

/** A source this test pushes into, counting how often it was subscribed and returned. */
function source() {
  let push!: (value: ExecutionResult) => Promise<unknown>;
  let stop!: (error?: unknown) => void;
  const state = { subscribed: 0, returned: 0 };
  const subscribeFn = async () => {
    state.subscribed++;
    return new Repeater<ExecutionResult>(async (p, s) => {
      push = p;
      stop = s;
      await s;
      state.returned++;
    });
  };
  return { state, subscribeFn, push: (v: number) => push({ data: { v } }), stop: (error?: unknown) => stop(error) };
}

const plugin = sharedSubscriptions();

/** Subscribes as `owner` through the plugin's hook, as envelop would. */
async function subscribe(src: ReturnType<typeof source>, owner: string, document = TASK, variables: Record<string, unknown> = { id: 'a' }) {
  const args = { document, variableValues: variables, contextValue: { caller: { owner } } } as unknown as ExecutionArgs;
  let replaced: ((args: ExecutionArgs) => unknown) | undefined;
  await plugin.onSubscribe!({
    args,
    subscribeFn: src.subscribeFn,
    setSubscribeFn: (fn: (args: ExecutionArgs) => unknown) => (replaced = fn),
  } as never);
  const result = (await replaced!(args)) as AsyncIterableIterator<ExecutionResult>;
  return result;
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('shared subscriptions', () => {
  it('one source for identical subscriptions of one owner; others get their own', async () => {
    const src = source();
    const [a, b] = await Promise.all([subscribe(src, 'alice'), subscribe(src, 'alice')]);
    const otherOwner = await subscribe(src, 'bob');
    const otherVariables = await subscribe(src, 'alice', TASK, { id: 'b' });
    expect(src.state.subscribed).toBe(3);
    for (const it of [a, b, otherOwner, otherVariables]) await it.return!();
  });

  it('delivers every result to every member, the same object, in order', async () => {
    const src = source();
    const a = await subscribe(src, 'carol', TASKS);
    const b = await subscribe(src, 'carol', TASKS);
    await tick();
    await src.push(1);
    await src.push(2);
    const [a1, b1] = await Promise.all([a.next(), b.next()]);
    expect(a1.value).toBe(b1.value);
    expect(a1.value).toEqual({ data: { v: 1 } });
    expect((await a.next()).value).toEqual({ data: { v: 2 } });
    expect((await b.next()).value).toEqual({ data: { v: 2 } });
    await a.return!();
    await b.return!();
  });

  it('does not repeat a result identical to the one before it (only unselected fields changed)', async () => {
    const src = source();
    const member = await subscribe(src, 'ivan', TASKS);
    await tick();
    for (const v of [1, 1, 2, 2, 2, 1]) await src.push(v);
    const seen = [];
    for (let i = 0; i < 3; i++) seen.push((await member.next()).value);
    expect(seen).toEqual([{ data: { v: 1 } }, { data: { v: 2 } }, { data: { v: 1 } }]);
    await member.return!();
  });

  it('taskUpdated: a late member starts from the newest result; tasksUpdated replays nothing', async () => {
    const one = source();
    const early = await subscribe(one, 'dave');
    await tick();
    await one.push(1);
    await one.push(2);
    const late = await subscribe(one, 'dave');
    expect((await late.next()).value).toEqual({ data: { v: 2 } });
    await one.push(3);
    expect((await late.next()).value).toEqual({ data: { v: 3 } });
    // The early member, not reading meanwhile, only holds the newest state.
    expect((await early.next()).value).toEqual({ data: { v: 3 } });

    const many = source();
    const first = await subscribe(many, 'dave', TASKS);
    await tick();
    await many.push(1);
    const joiner = await subscribe(many, 'dave', TASKS);
    await many.push(2);
    expect((await joiner.next()).value).toEqual({ data: { v: 2 } });
    expect((await first.next()).value).toEqual({ data: { v: 1 } });
    for (const it of [early, late, first, joiner]) await it.return!();
  });

  it(`drops a tasksUpdated member that falls ${MAX_PENDING_RESULTS} results behind, with SUBSCRIBER_TOO_SLOW; the others go on`, async () => {
    const src = source();
    const slow = await subscribe(src, 'erin', TASKS);
    const reader = await subscribe(src, 'erin', TASKS);
    await tick();
    for (let i = 1; i <= MAX_PENDING_RESULTS + 1; i++) {
      await src.push(i);
      expect((await reader.next()).value).toEqual({ data: { v: i } });
    }
    await expect(slow.next()).rejects.toMatchObject({ extensions: { code: 'SUBSCRIBER_TOO_SLOW' } });
    expect((await slow.next()).done).toBe(true);
    await src.push(-1);
    expect((await reader.next()).value).toEqual({ data: { v: -1 } });
    await reader.return!();
  });

  it('a source error reaches every member once, then they are done; the next subscriber starts afresh', async () => {
    const src = source();
    const a = await subscribe(src, 'frank', TASKS);
    const b = await subscribe(src, 'frank', TASKS);
    await tick();
    const failure = new Error('the API key was revoked');
    src.stop(failure);
    for (const it of [a, b]) {
      await expect(it.next()).rejects.toBe(failure);
      expect((await it.next()).done).toBe(true);
    }
    const again = await subscribe(src, 'frank', TASKS);
    expect(src.state.subscribed).toBe(2);
    await again.return!();
  });

  it('stops its source when the last member leaves, not before', async () => {
    const src = source();
    const a = await subscribe(src, 'grace', TASKS);
    const b = await subscribe(src, 'grace', TASKS);
    await tick();
    await a.return!();
    await tick();
    expect(src.state.returned).toBe(0);
    await b.return!();
    await tick();
    expect(src.state.returned).toBe(1);
  });

  it('a refusal (an error result instead of a stream) goes to everyone who asked, and is not kept', async () => {
    let calls = 0;
    const refusing = { state: { subscribed: 0, returned: 0 }, subscribeFn: async () => (calls++, { errors: [{ message: 'no such task' }] }), push: () => {}, stop: () => {} };
    const [a, b] = await Promise.all([subscribe(refusing as never, 'heidi'), subscribe(refusing as never, 'heidi')]);
    expect(a).toEqual({ errors: [{ message: 'no such task' }] });
    expect(b).toEqual(a);
    await subscribe(refusing as never, 'heidi');
    expect(calls).toBe(2);
  });
});
