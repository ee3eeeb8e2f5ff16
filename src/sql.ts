// Raw SQL on the hot path: the statements every task runs through (src/tasks/store.ts)
// go straight to node-postgres, on the same pool as Prisma. Prisma's query pipeline cost
// more CPU than the statements themselves, and these statements are hand-written SQL anyway.
//
// `sql` is a tagged template like Prisma.sql: values become $n parameters, nested
// fragments are spliced in. Parameters go over the wire untyped (text, or binary for
// Buffers), so a value whose type PostgreSQL cannot infer from its context (an INSERT …
// SELECT list, an operand of an overloaded operator) must carry an explicit cast.
import pg from 'pg';
import { isUuid } from './uuid.ts';

export class Fragment {
  constructor(
    readonly strings: readonly string[],
    readonly values: readonly unknown[],
  ) {}
}

export function sql(strings: TemplateStringsArray | readonly string[], ...values: unknown[]): Fragment {
  return new Fragment(strings, values);
}

export const empty = sql(['']);

/** The statement text with $1…$n and its parameters, nested fragments flattened. */
export function build(fragment: Fragment): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const render = (f: Fragment): string => {
    let text = f.strings[0];
    f.values.forEach((value, i) => {
      text += value instanceof Fragment ? render(value) : `$${values.push(value)}`;
      text += f.strings[i + 1];
    });
    return text;
  };
  return { text: render(fragment), values };
}

export type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;

// Every statement runs as a named prepared statement: each connection parses and plans a
// text once, then only binds values (our statements are long CTEs; sending and parsing
// them for every task cost more than running them). The names are per text, and the set
// of texts is small and fixed (the values are parameters, never spliced in).
const names = new Map<string, string>();
function nameOf(text: string): string {
  let name = names.get(text);
  if (!name) {
    name = `tasklane_${names.size + 1}`;
    names.set(text, name);
  }
  return name;
}

/** Runs `fragment` on `on` (the pool, or one of its clients); the rows. */
export async function query<Row>(on: Queryable, fragment: Fragment): Promise<Row[]> {
  const { text, values } = build(fragment);
  const result = await on.query<pg.QueryResultRow>({ name: nameOf(text), text, values });
  return result.rows as Row[];
}

const COPY_TIMEOUT_MS = 30_000;

/**
 * The bytes of column `column` of the row `id` of `table` (null if there is none), read with
 * `COPY … TO STDOUT (FORMAT binary)`: they arrive as they are. In a query result node-postgres
 * receives a bytea as hex text twice its size and decodes it; for a 780 KB photo that cost
 * 3.5 ms of CPU against 1 ms this way (and PostgreSQL's hex encoding on its side).
 * COPY takes no parameters, so only a checked UUID is ever spliced in. `on` is a pool (a
 * connection is taken for the COPY) or a connected client (used as it is).
 */
export async function readBytes(on: pg.Pool | pg.Client, table: string, column: string, id: string): Promise<Buffer | null> {
  if (!isUuid(id)) throw new Error(`not a UUID: ${id}`);
  const pooled = on instanceof pg.Pool;
  const client = pooled ? await on.connect() : on;
  let broken: Error | undefined;
  try {
    const data = await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        broken = new Error(`COPY took longer than ${COPY_TIMEOUT_MS} ms`);
        reject(broken);
      }, COPY_TIMEOUT_MS);
      const copy = new CopyOut(`COPY (SELECT "${column}" FROM "${table}" WHERE "id" = '${id}') TO STDOUT (FORMAT binary)`, (error, bytes) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(bytes);
      });
      client.query(copy as unknown as pg.QueryConfig);
    });
    return firstValueOfBinaryCopy(data);
  } catch (error) {
    broken ??= error instanceof Error && !('code' in error) ? error : undefined; // a connection problem: discard it
    throw error;
  } finally {
    if (pooled) (client as pg.PoolClient).release(broken);
  }
}

/** A minimal COPY TO STDOUT for node-postgres' Client (its "submittable" interface): collects the data. */
class CopyOut {
  private chunks: Buffer[] = [];
  private error: Error | null = null;
  private settled = false;
  constructor(
    private readonly text: string,
    private readonly done: (error: Error | null, data: Buffer) => void,
  ) {}
  submit(connection: { query(text: string): void }) {
    connection.query(this.text);
  }
  handleCopyData(message: { chunk: Buffer }) {
    this.chunks.push(message.chunk);
  }
  handleError(error: Error) {
    this.error = error;
    this.settle(); // also what a lost connection reports: no ReadyForQuery will follow
  }
  handleReadyForQuery() {
    this.settle();
  }
  private settle() {
    if (this.settled) return;
    this.settled = true;
    this.done(this.error, Buffer.concat(this.chunks));
  }
  handleCommandComplete() {}
  handleRowDescription() {}
  handleDataRow() {}
  handlePortalSuspended() {}
  handleEmptyQuery() {}
}

/** The first column of the first row of a binary COPY (null: no row, or NULL). */
function firstValueOfBinaryCopy(data: Buffer): Buffer | null {
  // Signature (11 bytes), flags (int32), header extension length (int32) and extension.
  if (data.length < 19 || data.toString('latin1', 0, 11) !== 'PGCOPY\n\xff\r\n\0') throw new Error('not a binary COPY');
  let at = 19 + data.readInt32BE(15);
  const fields = data.readInt16BE(at);
  if (fields === -1) return null; // the trailer: no row
  at += 2;
  const length = data.readInt32BE(at);
  return length === -1 ? null : data.subarray(at + 4, at + 4 + length);
}
