"""`twotower supabase migrations`: twotower's schema as Supabase CLI migration files, so a team
ships it with `supabase db push` in its own migration history. The files hold the same SQL that
`twotower db init` runs (db.migrate), in the same order: bookkeeping, the source views and
record_decision for the configured mapping, the numbered migrations (recorded as applied, so a
later `db init` has nothing to do), Supabase's auth helpers only where the database lacks them,
then the grants and RLS policies. The source views need the app's column types, so the files are
written from a connection to the project's database (DATABASE_URL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql as psql

from twotower import db, source
from twotower.config import SourceConfig
from twotower.errors import InvalidInput

HEADER = ("-- Written by `twotower supabase migrations` ({stamp}); do not edit: re-run it after changing\n"
          "-- the `source` mapping or upgrading twotower. Same SQL as `twotower db init`.\n"
          "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA extensions;\n"
          "SET search_path = twotower, public, extensions;\n\n")


def migration_files(conn: psycopg.Connection, src: SourceConfig) -> list[tuple[str, str]]:
    """(name, SQL) of each file, in the order they must run."""
    views = [source.view_sql(conn, src, v).as_string(conn) + ";" for v in source.VIEWS]
    drops = [psql.SQL("DROP VIEW IF EXISTS {}.{};").format(psql.Identifier(source.SCHEMA),
                                                            psql.Identifier(v.name)).as_string(conn)
             for v in source.VIEWS]
    keys = [k.as_string(conn) + ";" for k in source.key_functions(conn, src)]
    files = [("twotower_schema", db.sql("bookkeeping")),
             ("twotower_source", "\n".join([*drops, *keys, *views, source._record_decision(conn, src, demo=False)
                                           .as_string(conn) + ";"]) + "\n")]
    for version, name, text in db.migrations():
        files.append((f"twotower_{version:03d}_{name}", text.rstrip() + "\n" + psql.SQL(
            "INSERT INTO twotower.schema_migrations (version, name) VALUES ({}, {}) ON CONFLICT DO NOTHING;\n")
            .format(psql.Literal(version), psql.Literal(name)).as_string(conn)))
    security = db.serving_sql() + "\n" + psql.SQL(
        "INSERT INTO twotower.installed (object, detail) VALUES ('rpc', 'public.recommend_videos') "
        "ON CONFLICT DO NOTHING;\n").as_string(conn) + db.sql("security")
    if conn.execute("SELECT to_regprocedure('auth.jwt()')").fetchone()[0] is None:
        security = db.sql("auth_shim") + "\n" + security
    files.append(("twotower_security", security))
    return files


def write_migrations(conn: psycopg.Connection, src: SourceConfig, out: Path,
                     now: datetime | None = None) -> list[Path]:
    """Write the files into `out` (e.g. supabase/migrations), named `<UTC timestamp>_<name>.sql`
    one second apart, so the Supabase CLI orders them. Refuses to overwrite anything."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    out.mkdir(parents=True, exist_ok=True)
    files = migration_files(conn, src)
    paths = [out / f"{(now + timedelta(seconds=i)):%Y%m%d%H%M%S}_{name}.sql" for i, (name, _) in enumerate(files)]
    taken = [p for p in paths if p.exists()]
    if taken:
        raise InvalidInput(f"{taken[0]} exists: refusing to overwrite a migration")
    for p, (_, text) in zip(paths, files, strict=True):
        p.write_text(HEADER.format(stamp=now.isoformat()) + text)
    return paths
