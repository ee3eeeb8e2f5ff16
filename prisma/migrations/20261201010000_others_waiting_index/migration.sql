-- "Is a task of another key waiting its turn?" (asked by every claim at its key's cap and by
-- every wake-up after a job) scanned every QUEUED task, the caller's own backlog included:
-- with one key's thousands of tasks queued, each job's claim and wake-up read them all.
-- With this index and `<>` split into two ranges, each half stops at its first due task of
-- another key.
CREATE INDEX "Task_status_waitingForSlot_ownerId_idx" ON "Task"("status", "waitingForSlot", "ownerId");

CREATE OR REPLACE FUNCTION "tasklane_others_waiting"(p_owner TEXT) RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM "Task"
        WHERE "status" = 'QUEUED' AND NOT "waitingForSlot" AND "ownerId" < p_owner
          AND ("runAfter" IS NULL OR "runAfter" <= now()))
    OR EXISTS (
        SELECT 1 FROM "Task"
        WHERE "status" = 'QUEUED' AND NOT "waitingForSlot" AND "ownerId" > p_owner
          AND ("runAfter" IS NULL OR "runAfter" <= now()))
$$;
