-- MAX_RUNNING_TASKS_PER_KEY: one key's RUNNING tasks across every worker on every host.
--
-- The cap must hold under concurrency, so the claim takes the owner's advisory lock, THEN
-- counts and claims (as tasklane_insert_task does for the quota: in a VOLATILE function each
-- statement takes a fresh snapshot, so the count sees every claim committed by whoever held
-- the lock before; the lock is held until the calling statement commits).
--
-- The cap is work-conserving: it binds only while another key has a task waiting its turn
-- ("others waiting": a due QUEUED task of another owner, not itself waiting for a slot). A
-- key alone may use every idle worker; as soon as another key's task waits, the first's
-- next claims over the cap yield, so that task starts within one job's time.
--
-- A task whose owner is at the cap while others wait is not claimed: it stays QUEUED, no
-- attempt is spent, and it is marked "waitingForSlot" (its queue job is dropped; the
-- reconciler leaves it alone). Whenever a slot of that owner may have freed,
-- tasklane_wake_waiting (same lock) unmarks as many of them, oldest first, as the owner has
-- free slots — or all of them (up to p_limit) when nobody else waits; the caller enqueues them.

ALTER TABLE "Task" ADD COLUMN "waitingForSlot" BOOLEAN NOT NULL DEFAULT false;

-- The per-owner counts below (and the quota's in tasklane_insert_task).
CREATE INDEX "Task_ownerId_status_idx" ON "Task"("ownerId", "status");

-- Whether any key other than p_owner has a task waiting its turn (see above).
CREATE FUNCTION "tasklane_others_waiting"(p_owner TEXT) RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM "Task"
        WHERE "status" = 'QUEUED' AND "ownerId" <> p_owner AND NOT "waitingForSlot"
          AND ("runAfter" IS NULL OR "runAfter" <= now()))
$$;

-- QUEUED → RUNNING for one delivery, unless the owner already has p_max_running RUNNING tasks
-- while others wait.
-- One row: the claimed task and when it was queued; or, over the cap, task NULL (the task is
-- now waitingForSlot). No row: the task is not claimable (not QUEUED, or waiting out a backoff).
CREATE FUNCTION "tasklane_claim_task"(p_id UUID, p_lease INTERVAL, p_max_running INTEGER)
RETURNS TABLE ("task" "Task", "queuedAt" TIMESTAMPTZ(3)) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_owner TEXT;
    v_queued_at TIMESTAMPTZ(3);
    t "Task";
BEGIN
    SELECT "ownerId", "updatedAt" INTO v_owner, v_queued_at FROM "Task"
    WHERE "id" = p_id AND "status" = 'QUEUED' AND ("runAfter" IS NULL OR "runAfter" <= now());
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('running:' || v_owner, 0));
    IF (SELECT count(*) FROM "Task" WHERE "ownerId" = v_owner AND "status" = 'RUNNING') >= p_max_running
        AND "tasklane_others_waiting"(v_owner) THEN
        -- Not a change anyone sees (still QUEUED, same version): only who may deliver it again.
        UPDATE "Task" SET "waitingForSlot" = true WHERE "id" = p_id AND "status" = 'QUEUED';
        IF FOUND THEN
            RETURN QUERY SELECT NULL::"Task", v_queued_at;
        END IF;
        RETURN;
    END IF;
    UPDATE "Task" SET "status" = 'RUNNING', "attempts" = "attempts" + 1, "progress" = 0, "runAfter" = NULL,
        "waitingForSlot" = false, "startedAt" = COALESCE("startedAt", now()), "leaseUntil" = now() + p_lease,
        "version" = "version" + 1, "updatedAt" = now()
    WHERE "id" = p_id AND "status" = 'QUEUED'
    RETURNING * INTO t;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO "TaskEvent" ("taskId", "status", "message", "version") VALUES (t."id", t."status", 'running', t."version");
    RETURN QUERY SELECT t, v_queued_at;
END
$$;

-- Unmarks up to (free slots of p_owner) of its waitingForSlot tasks, oldest first, and returns
-- their ids for the caller to enqueue. Free = p_max_running - RUNNING - QUEUED tasks already
-- on their way to a worker (not waiting, not in a retry backoff), so a freed slot wakes one
-- task, not all of them; when nobody else waits, up to p_limit (the cap does not bind).
CREATE FUNCTION "tasklane_wake_waiting"(p_owner TEXT, p_max_running INTEGER, p_limit INTEGER)
RETURNS SETOF UUID LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_free BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('running:' || p_owner, 0));
    IF NOT "tasklane_others_waiting"(p_owner) THEN
        v_free := p_limit;
    ELSE
        SELECT p_max_running - count(*) INTO v_free FROM "Task"
        WHERE "ownerId" = p_owner AND ("status" = 'RUNNING'
            OR ("status" = 'QUEUED' AND NOT "waitingForSlot" AND ("runAfter" IS NULL OR "runAfter" <= now())));
    END IF;
    IF v_free <= 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE "Task" SET "waitingForSlot" = false
    WHERE "id" IN (
        SELECT "id" FROM "Task" WHERE "ownerId" = p_owner AND "status" = 'QUEUED' AND "waitingForSlot"
        ORDER BY "updatedAt", "id" LIMIT v_free
    ) AND "status" = 'QUEUED' AND "waitingForSlot"
    RETURNING "id";
END
$$;
