// One connection pool per isolate, to SUPABASE_DB_URL (which Supabase sets in every function)
// or DATABASE_URL. Statements name twotower's objects with their schema, so a transaction pooler
// that drops startup parameters changes nothing; on port 6543 (Supavisor's transaction mode)
// statements are not prepared.

import { postgres } from "./deps.ts";
import { HttpError } from "./http.ts";

export type Sql = ReturnType<typeof postgres>;

let pool: Sql | null = null;

export function dbUrl(): string {
  const url = Deno.env.get("SUPABASE_DB_URL") || Deno.env.get("DATABASE_URL");
  if (!url) throw new HttpError(503, "no database configured: set SUPABASE_DB_URL (Supabase sets it) or DATABASE_URL");
  return url;
}

/** A libpq URL as a WHATWG URL (which needs a host name: libpq's may be empty). */
function parse(url: string): URL {
  try {
    return new URL(url.replace(/^(postgres(?:ql)?:\/\/(?:[^/?@]*@)?)(?=[/?]|$)/, "$1localhost"));
  } catch {
    throw new HttpError(503, "the database URL (SUPABASE_DB_URL or DATABASE_URL) is not a postgresql:// URL");
  }
}

/** postgres.js options for a URL, including libpq's `?host=/socket/dir` form. */
export function options(url: string): Record<string, unknown> {
  const u = parse(url);
  const socket = u.searchParams.get("host");
  const o: Record<string, unknown> = {
    max: Number(Deno.env.get("TWOTOWER_DB_POOL") ?? 4),
    prepare: (u.port || "5432") !== "6543",
    idle_timeout: 60,
    connect_timeout: 5,
    onnotice: () => {},
    connection: { application_name: "twotower-edge" },
  };
  if (socket?.startsWith("/")) Object.assign(o, { host: socket, port: Number(u.port || 5432) });
  return o;
}

export function db(): Sql {
  if (!pool) {
    const url = dbUrl();
    const u = parse(url);
    u.searchParams.delete("host"); // postgres.js would read the socket dir as a host name
    u.searchParams.delete("options");
    pool = postgres(u.href, options(url));
  }
  return pool;
}

const DOWN = /ECONNREFUSED|ENOENT|ETIMEDOUT|ECONNRESET|CONNECT_TIMEOUT|CONNECTION_CLOSED|CONNECTION_ENDED|CONNECTION_DESTROYED|57P0|53300/;

/** A database failure as an answer: unreachable is 503 (retry), a refused argument 422, the
 * rest 500 with PostgreSQL's one line. */
export function dbError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  const err = e as { code?: string; errno?: string; message?: string };
  const text = `${err.code ?? ""} ${err.errno ?? ""} ${err.message ?? ""}`;
  if (DOWN.test(text)) return new HttpError(503, "the database is unreachable; retry shortly");
  if (err.code === "22023") return new HttpError(422, err.message ?? "invalid argument");
  if (err.code === "42501") return new HttpError(403, err.message ?? "permission denied");
  if (err.code === "3F000" || err.code === "42883" || err.code === "42P01") {
    return new HttpError(503, `twotower is not installed in this database (${err.message}): run \`twotower db init\``);
  }
  return new HttpError(500, `database error: ${(err.message ?? String(e)).split("\n")[0]}`);
}
