// The data step between 20261130150000_image_storage_key and 20261130160000_image_bytes_in_store
// (see src/migrate.ts): the bytes of every image still in "Image"."data" go to the blob store,
// then the row gets its storageKey and sha256. Batched by id; one image's bytes in memory
// at a time (read in binary with COPY). Idempotent: the key is a function of the row's id,
// so a run interrupted between a put and its UPDATE puts the same blob again next time.
import type { DataStepContext } from './migrate.ts';
import { readBytes } from './sql.ts';
import { imageContentType, imageKey } from './storage/images.ts';

const BATCH = 100;

export async function moveImageBytesToStore({ client, store, log }: DataStepContext): Promise<void> {
  let moved = 0;
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const { rows } = await client.query<{ id: string; format: string }>(
      `SELECT "id", "format" FROM "Image" WHERE "storageKey" IS NULL AND "id" > $1::uuid ORDER BY "id" LIMIT ${BATCH}`,
      [after],
    );
    if (rows.length === 0) break;
    for (const { id, format } of rows) {
      after = id;
      const bytes = await readBytes(client, 'Image', 'data', id);
      if (!bytes) continue; // deleted meanwhile
      const key = imageKey(id);
      // put() returns once the blob is durable (disk: fsync'd and renamed; s3: stored).
      const { sha256, byteSize } = await store().put(key, bytes, { contentType: imageContentType(format) });
      await client.query(`UPDATE "Image" SET "storageKey" = $2, "sha256" = $3, "byteSize" = $4 WHERE "id" = $1::uuid`, [
        id,
        key,
        sha256,
        byteSize,
      ]);
      moved++;
    }
    log('image bytes moved to the blob store', { moved });
  }
}
