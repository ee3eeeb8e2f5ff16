-- Image bytes are already compressed (JPEG, PNG, WebP, AVIF, GIF): PostgreSQL's default
-- storage (EXTENDED) tries pglz on every value over ~2 KB and throws the result away. Storing
-- them out of line without compression (EXTERNAL) cuts that CPU from every insert and read
-- (bench/RESULTS.md). Prisma's schema cannot express storage; this migration is its home.
ALTER TABLE "Image" ALTER COLUMN "data" SET STORAGE EXTERNAL;
