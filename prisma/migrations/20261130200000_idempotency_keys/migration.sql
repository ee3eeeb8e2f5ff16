-- Idempotent createTask: the same key of the same owner (API key name) within 24 h answers
-- with the task it created. A key row is inserted in the same statement as its task (see
-- src/tasks/store.ts insertTask): the primary key makes concurrent duplicates conflict, so
-- exactly one of them commits and the others read its row. Deleting a task row (retention)
-- takes its key with it.

-- CreateTable
CREATE TABLE "IdempotencyKey" (
    "ownerId" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "fingerprint" TEXT NOT NULL,
    "taskId" UUID NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "IdempotencyKey_pkey" PRIMARY KEY ("ownerId","key")
);

-- CreateIndex
CREATE UNIQUE INDEX "IdempotencyKey_taskId_key" ON "IdempotencyKey"("taskId");

-- CreateIndex
CREATE INDEX "IdempotencyKey_createdAt_idx" ON "IdempotencyKey"("createdAt");

-- AddForeignKey
ALTER TABLE "IdempotencyKey" ADD CONSTRAINT "IdempotencyKey_taskId_fkey" FOREIGN KEY ("taskId") REFERENCES "Task"("id") ON DELETE CASCADE ON UPDATE CASCADE;
