// Raw SQL on the hot path: the statements every task runs through (src/tasks/store.ts)
// go straight to node-postgres, on the same pool as Prisma. Prisma's query pipeline cost
// more CPU than the statements themselves — with image bytes most of all (measured in
// bench/RESULTS.md) — and these statements are hand-written SQL anyway.
//
// `sql` is a tagged template like Prisma.sql: values become $n parameters, nested
// fragments are spliced in. Parameters go over the wire untyped (text, or binary for
// Buffers), so a value whose type PostgreSQL cannot infer from its context (an INSERT …
// SELECT list, an operand of an overloaded operator) must carry an explicit cast.
import pg from 'pg';

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

/** `a, b, c` (or with another separator) from fragments. */
export function join(fragments: Fragment[], separator = ', '): Fragment {
  if (fragments.length === 0) return empty;
  const strings = ['', ...Array(fragments.length - 1).fill(separator), ''];
  return new Fragment(strings, fragments);
}

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

/** Runs `fragment` on `on` (the pool, or a client inside a transaction); the rows. */
export async function query<Row>(on: Queryable, fragment: Fragment): Promise<Row[]> {
  const { text, values } = build(fragment);
  const result = await on.query<pg.QueryResultRow>({ name: nameOf(text), text, values });
  return result.rows as Row[];
}

/** Runs `work` in a transaction on one connection of `pool` (ROLLBACK on any error). */
export async function transaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
    throw error;
  } finally {
    client.release(broken); // a connection that could not roll back is discarded
  }
}
