-- Retention (RESULT_TTL_MS, TASK_TTL_MS; src/tasks/retention.ts).
--
-- An image removed by retention keeps its row as a tombstone: "expiredAt" set, the bytes gone
-- from the blob store. So /images/<id> can answer 410 Gone (it existed, it expired) rather
-- than 404, the task keeps "resultImageId" (resultOfJob), and no row points at a missing blob
-- without saying so. The tombstones go with their task, TASK_TTL_MS after it ended.
ALTER TABLE "Image" ADD COLUMN "expiredAt" TIMESTAMPTZ(3);

-- When retention removed this task's images: the task row is the truth that `source` and
-- `result` are gone (image metadata is cached per process, see src/graphql/loaders.ts).
ALTER TABLE "Task" ADD COLUMN "imagesExpiredAt" TIMESTAMPTZ(3);

-- The retention sweep's candidates, and only those: ended ("finishedAt" set), images not yet
-- removed ("imagesExpiredAt" IS NULL), oldest first. (Removing the task rows later uses
-- "Task_status_updatedAt_idx".)
CREATE INDEX "Task_imagesExpiredAt_finishedAt_idx" ON "Task"("imagesExpiredAt", "finishedAt");

-- Removing an Image row makes PostgreSQL find the tasks that point at it (ON DELETE SET NULL):
-- without these, every image deleted (deleteTask, retention) is two sequential scans of "Task".
CREATE INDEX "Task_sourceImageId_idx" ON "Task"("sourceImageId");
CREATE INDEX "Task_resultImageId_idx" ON "Task"("resultImageId");
