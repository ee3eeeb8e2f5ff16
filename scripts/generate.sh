#!/bin/sh
# Generates the Prisma client into src/generated/prisma.
# The Prisma CLI insists on downloading its schema engine before `generate`, although
# generation never runs it; our machines cannot download it, so when no engine is
# installed we point the CLI at a stand-in.
set -e
if [ -z "$PRISMA_SCHEMA_ENGINE_BINARY" ] && ! ls node_modules/@prisma/engines/schema-engine-* >/dev/null 2>&1; then
  export PRISMA_SCHEMA_ENGINE_BINARY=/bin/false
fi
exec npx prisma generate
