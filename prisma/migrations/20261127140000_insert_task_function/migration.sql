-- Creating a task under its owner's quota in ONE round trip (src/tasks/store.ts insertTask).
-- The quota must be exact under concurrency: take the owner's advisory lock, THEN count.
-- One plain statement cannot do that (its snapshot predates the lock it takes), so it was a
-- transaction of four round trips (BEGIN, lock, insert, COMMIT). In a VOLATILE function each
-- statement takes a fresh snapshot, so the count below sees every task committed by whoever
-- held the lock before; the lock is held until the calling statement commits.
-- Prisma's schema cannot express functions; this migration is their home.
CREATE FUNCTION "tasklane_insert_task"(
    p_task_id UUID,
    p_image_id UUID,
    p_owner TEXT,
    p_active "TaskStatus"[],
    p_limit INTEGER,
    p_format "ImageFormat",
    p_width INTEGER,
    p_height INTEGER,
    p_data BYTEA,
    p_job "JobDefinition",
    p_params JSONB,
    p_run BOOLEAN
) RETURNS SETOF "Task" LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    t "Task";
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('quota:' || p_owner, 0));
    IF (SELECT count(*) FROM "Task" WHERE "ownerId" = p_owner AND "status" = ANY(p_active)) >= p_limit THEN
        RETURN; -- quota full: no row
    END IF;
    INSERT INTO "Image" ("id", "ownerId", "format", "width", "height", "byteSize", "data")
    VALUES (p_image_id, p_owner, p_format, p_width, p_height, length(p_data), p_data);
    INSERT INTO "Task" ("id", "status", "jobDefinition", "params", "ownerId", "sourceImageId", "version")
    VALUES (p_task_id, CASE WHEN p_run THEN 'QUEUED' ELSE 'CREATED' END::"TaskStatus", p_job, p_params, p_owner, p_image_id,
            CASE WHEN p_run THEN 2 ELSE 1 END)
    RETURNING * INTO t;
    INSERT INTO "TaskEvent" ("taskId", "status", "message", "version", "at")
    SELECT t."id", e.status::"TaskStatus", e.message, e.version, t."createdAt"
    FROM (VALUES ('CREATED', 'created', 1), ('QUEUED', 'queued', 2)) AS e(status, message, version)
    WHERE e.version = 1 OR p_run;
    RETURN NEXT t;
END
$$;
