-- Callbacks (webhooks) when a task ends: DONE, FAILED or DELETED (DESIGN.md §4).
--
-- "Callback" is the outbox: one row per message to deliver, written by a trigger on "Task" in
-- the same transaction as the transition that causes it, so no writer (store.ts, the PL/pgSQL
-- functions, the reconciler, whatever comes later) can commit a terminal state without its
-- message, nor a message without its state. src/callbacks/ delivers the rows, from every
-- worker process, and records each attempt in "CallbackAttempt" (what Task.callbacks lists).

-- The URL the messages of a task go to (checked when the task is created).
ALTER TABLE "Task" ADD COLUMN "callbackUrl" TEXT;

-- The signing secret of callbacks (Standard Webhooks' whsec_<base64 key>). One per key name:
-- every key of a name carries the same one (createKey copies it), and the name's oldest key's
-- is the one used, so rotating the keys of a name keeps its secret. Existing names get one
-- each here: 32 bytes from two gen_random_uuid() (PostgreSQL's strong random source;
-- 244 random bits) without needing pgcrypto.
ALTER TABLE "ApiKey" ADD COLUMN "callbackSecret" TEXT;
UPDATE "ApiKey" k SET "callbackSecret" = s."secret"
FROM (
    SELECT n."name", 'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64') AS "secret"
    FROM (SELECT DISTINCT "name" FROM "ApiKey") n
) s
WHERE k."name" = s."name";
ALTER TABLE "ApiKey" ALTER COLUMN "callbackSecret" SET NOT NULL;

-- One message per task event. "nextAttemptAt" is when it is due (the lease of an attempt in
-- flight, too); NULL once it is delivered or given up.
CREATE TABLE "Callback" (
    "id" UUID NOT NULL,
    "taskId" UUID NOT NULL,
    "ownerId" TEXT NOT NULL,
    "event" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "data" JSONB NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "nextAttemptAt" TIMESTAMPTZ(3) DEFAULT CURRENT_TIMESTAMP,
    "attemptStartedAt" TIMESTAMPTZ(3),
    "deliveredAt" TIMESTAMPTZ(3),
    "gaveUpAt" TIMESTAMPTZ(3),

    CONSTRAINT "Callback_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "Callback_taskId_event_key" ON "Callback"("taskId", "event");
CREATE INDEX "Callback_nextAttemptAt_idx" ON "Callback"("nextAttemptAt");

ALTER TABLE "Callback" ADD CONSTRAINT "Callback_taskId_fkey" FOREIGN KEY ("taskId") REFERENCES "Task"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Every attempt of every message, with the receiver's status code or why there was none.
CREATE TABLE "CallbackAttempt" (
    "id" BIGSERIAL NOT NULL,
    "callbackId" UUID NOT NULL,
    "taskId" UUID NOT NULL,
    "attempt" INTEGER NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL,
    "statusCode" INTEGER,
    "error" TEXT,

    CONSTRAINT "CallbackAttempt_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "CallbackAttempt_taskId_id_idx" ON "CallbackAttempt"("taskId", "id");
CREATE INDEX "CallbackAttempt_callbackId_idx" ON "CallbackAttempt"("callbackId");

ALTER TABLE "CallbackAttempt" ADD CONSTRAINT "CallbackAttempt_callbackId_fkey" FOREIGN KEY ("callbackId") REFERENCES "Callback"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- The message of a transition into DONE, FAILED or DELETED of a task with a callback URL: the
-- task as that transition left it (the result image's row, inserted by the same statement as
-- DONE, is visible to an AFTER trigger). Once per task and event (a terminal state is entered
-- once; the unique index makes sure).
CREATE FUNCTION "tasklane_task_callback"() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO "Callback" ("id", "taskId", "ownerId", "event", "url", "data", "createdAt", "nextAttemptAt")
    VALUES (gen_random_uuid(), NEW."id", NEW."ownerId", 'task.' || lower(NEW."status"::text), NEW."callbackUrl",
        jsonb_build_object(
            'id', NEW."id",
            'status', NEW."status",
            'error', NEW."error",
            'progress', NEW."progress",
            'attempts', NEW."attempts",
            'version', NEW."version",
            'resultOfJob', CASE WHEN NEW."status" = 'DONE' THEN NEW."resultImageId" END,
            'result', CASE WHEN NEW."status" = 'DONE' THEN (
                SELECT jsonb_build_object('id', i."id", 'format', i."format", 'width', i."width", 'height', i."height", 'byteSize', i."byteSize")
                FROM "Image" i WHERE i."id" = NEW."resultImageId") END,
            'finishedAt', NEW."finishedAt"),
        now(), now())
    ON CONFLICT ("taskId", "event") DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER "Task_callback" AFTER UPDATE OF "status" ON "Task" FOR EACH ROW
WHEN (NEW."callbackUrl" IS NOT NULL AND NEW."status" IN ('DONE', 'FAILED', 'DELETED') AND OLD."status" IS DISTINCT FROM NEW."status")
EXECUTE FUNCTION "tasklane_task_callback"();
