-- The bytes of every image are in the blob store now (src/migrate.ts moved them after
-- 20261130150000_image_storage_key): "storageKey" and "sha256" become required, "data" goes.
-- An image the move missed makes SET NOT NULL fail, and so this migration, rather than lose it.
ALTER TABLE "Image" ALTER COLUMN "storageKey" SET NOT NULL;
ALTER TABLE "Image" ALTER COLUMN "sha256" SET NOT NULL;
ALTER TABLE "Image" DROP COLUMN "data";

-- Creating a task under its owner's quota in one round trip (see 20261127140000_insert_task_function):
-- the same function, but the image row now points at a blob already written to the store
-- instead of carrying the bytes.
DROP FUNCTION "tasklane_insert_task"(UUID, UUID, TEXT, "TaskStatus"[], INTEGER, "ImageFormat", INTEGER, INTEGER, BYTEA, "JobDefinition", JSONB, BOOLEAN);

CREATE FUNCTION "tasklane_insert_task"(
    p_task_id UUID,
    p_image_id UUID,
    p_owner TEXT,
    p_active "TaskStatus"[],
    p_limit INTEGER,
    p_format "ImageFormat",
    p_width INTEGER,
    p_height INTEGER,
    p_byte_size INTEGER,
    p_storage_key TEXT,
    p_sha256 TEXT,
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
    INSERT INTO "Image" ("id", "ownerId", "format", "width", "height", "byteSize", "storageKey", "sha256")
    VALUES (p_image_id, p_owner, p_format, p_width, p_height, p_byte_size, p_storage_key, p_sha256);
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
