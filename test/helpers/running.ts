// How many tasks of one key ran at once, read from the audit trail.
type Sql = (text: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

/**
 * The most tasks of `ownerId` that were RUNNING at the same time, replaying its TaskEvents in
 * id order. A claim counts its owner's RUNNING tasks under the owner's lock before it inserts
 * its event, so every claim's event id follows the events of the claims and ends it saw:
 * replayed in that order the count is exact, never more than what a claim saw.
 */
export async function maxRunningAtOnce(sql: Sql, ownerId: string): Promise<number> {
  const events = await sql(
    `SELECT e."taskId", e.status FROM "TaskEvent" e JOIN "Task" t ON t.id = e."taskId" WHERE t."ownerId" = $1 ORDER BY e.id`,
    [ownerId],
  );
  const running = new Set<string>();
  let most = 0;
  for (const event of events) {
    if (event.status === 'RUNNING') running.add(event.taskId as string);
    else running.delete(event.taskId as string);
    most = Math.max(most, running.size);
  }
  return most;
}
