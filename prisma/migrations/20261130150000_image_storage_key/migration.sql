-- Image bytes move out of PostgreSQL into the blob store (DESIGN.md §2): each image row
-- names its blob ("storageKey") and keeps the blob's sha-256 (the strong ETag of downloads).
-- Nullable here: after this migration src/migrate.ts copies the bytes of every existing
-- image into the store and fills both columns; 20261130160000_image_bytes_in_store then
-- makes them required and drops "data".
ALTER TABLE "Image" ADD COLUMN "storageKey" TEXT;
ALTER TABLE "Image" ADD COLUMN "sha256" TEXT;

-- CreateIndex
CREATE UNIQUE INDEX "Image_storageKey_key" ON "Image"("storageKey");
