// The verdict of the reliability tests: once settled, every task is DONE, completed once,
// nothing lost, broken or orphaned.
import { expect } from 'vitest';
import { auditWhenSettled, type Audit } from './faults.ts';

type Sql = (text: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

export async function expectAllDoneOnce(sql: Sql, ids: string[], timeoutMs = 180_000): Promise<Audit> {
  const result = await auditWhenSettled(sql, ids, timeoutMs);
  expect({ lost: result.lost, stuck: result.stuck, duplicates: result.duplicates, broken: result.broken, orphanImages: result.orphanImages }).toEqual({
    lost: [],
    stuck: [],
    duplicates: [],
    broken: [],
    orphanImages: 0,
  });
  for (const id of ids) expect(result.facts.get(id)!.status, `task ${id}: ${result.facts.get(id)!.events}`).toBe('DONE');
  return result;
}
