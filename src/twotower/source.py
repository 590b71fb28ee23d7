"""The app's tables, read as they are: views in twotower's own schema built from the `source`
mapping of the config (DESIGN §2), with the seed's column names and ids cast to text, so every
query of twotower reads `src_videos`, `src_decisions`, ... whatever the app calls its tables and
columns and whatever its id types are (uuid, bigint, text). Nothing here alters the app's tables.

The one write twotower makes into an app table, recording a decision from the service, goes
through `twotower.record_decision(...)`, generated here with the mapping's names and the app's
own column types."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from twotower.config import SourceConfig
from twotower.errors import InvalidInput, StoreUnavailable

SCHEMA = "twotower"


@dataclass(frozen=True)
class View:
    name: str  # the view in twotower's schema
    key: str  # the mapping's key in SourceConfig
    default_table: str
    columns: tuple[tuple[str, str], ...]  # (seed column name, type it is read as)
    # (key column, seed id column): the id again in the app's own type, so a per-user or
    # per-video filter compares `user_key = twotower.user_key($1)` and the app's index serves it
    # (a text-cast id would make every lookup a scan of the app's table).
    keys: tuple[tuple[str, str], ...] = ()
    # columns read as NULL when the app's table lacks them and the mapping does not name them
    optional: tuple[str, ...] = ()


VIEWS = (
    View("src_profiles", "profiles", "profiles",
         (("user_id", "text"), ("display_name", "text"), ("created_at", "timestamptz"), ("age_range", "text"),
          ("region", "text"), ("updated_at", "timestamptz")), (("user_key", "user_id"),)),
    View("src_videos", "videos", "videos",
         (("id", "text"), ("title", "text"), ("description", "text"), ("genre", "text"), ("maker", "text"),
          ("price", "double precision"), ("duration_seconds", "integer"), ("product_released_at", "timestamptz"),
          ("created_at", "timestamptz"), ("updated_at", "timestamptz")), (("video_key", "id"),)),
    # created_at: when the tag (performer) was attached, where the app records it; features for a
    # past cutoff use only what existed then (NULL: always there, like a genre).
    View("src_video_tags", "video_tags", "video_tags",
         (("video_id", "text"), ("tag_name", "text"), ("created_at", "timestamptz")),
         (("video_key", "video_id"),), ("created_at",)),
    View("src_video_performers", "video_performers", "video_performers",
         (("video_id", "text"), ("performer_name", "text"), ("created_at", "timestamptz")),
         (("video_key", "video_id"),), ("created_at",)),
    View("src_decisions", "decisions", "user_video_decisions",
         (("user_id", "text"), ("video_id", "text"), ("decision_type", "text"), ("created_at", "timestamptz"),
          ("seq", "bigint")),
         (("user_key", "user_id"), ("video_key", "video_id")), ("seq",)),
)


def mapping(cfg: SourceConfig, view: View) -> dict[str, str | None]:
    """table + seed column -> the app's column (None: the app has none)."""
    given = getattr(cfg, view.key) or {}
    unknown = set(given) - {"table", *(c for c, _ in view.columns)}
    if unknown:
        raise InvalidInput(f"source.{view.key}: unknown keys {', '.join(sorted(unknown))} "
                           f"(known: table, {', '.join(c for c, _ in view.columns)})")
    out = {"table": view.default_table, **{c: c for c, _ in view.columns}}
    out.update(given)
    return out


def _columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    rows = conn.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
                        (schema, table)).fetchall()
    return dict(rows)


def view_sql(conn: psycopg.Connection, cfg: SourceConfig, view: View) -> sql.Composed:
    """CREATE VIEW for one source table; one clear line if the mapping names what is not there."""
    m = mapping(cfg, view)
    out = sql.SQL("CREATE VIEW {}.{} AS ").format(sql.Identifier(SCHEMA), sql.Identifier(view.name))
    nulls = [sql.SQL("NULL::{} AS {}").format(sql.SQL(t), sql.Identifier(c)) for c, t in view.columns]
    # a missing key has the app's id type all the same (joins compare keys of two views)
    key_nulls = [sql.SQL("{}.{}(NULL) AS {}").format(sql.Identifier(SCHEMA), sql.Identifier(k), sql.Identifier(k))
                 for k, _ in view.keys]
    if m["table"] is None:  # the app has no such table: an empty view of the right shape
        return out + sql.SQL("SELECT {} WHERE false").format(sql.SQL(", ").join(nulls + key_nulls))
    have = _columns(conn, cfg.schema, m["table"])
    if not have:
        raise StoreUnavailable(f"source.{view.key}: table {cfg.schema}.{m['table']} does not exist "
                               f"(set source.{view.key}.table, or null if the app has none)")
    cols = []
    for (c, t), null in zip(view.columns, nulls, strict=True):
        src = m[c]
        given = getattr(cfg, view.key) or {}
        if src is None or (c in view.optional and c not in given and src not in have):
            cols.append(null)
        elif src not in have:
            raise StoreUnavailable(f"source.{view.key}.{c}: column {src!r} is not in {cfg.schema}.{m['table']} "
                                   f"(it has {', '.join(sorted(have))}); set it, or null if there is none")
        else:
            cols.append(sql.SQL("{}::{} AS {}").format(sql.Identifier(src), sql.SQL(t), sql.Identifier(c)))
    for k, c in view.keys:  # the ids as the app stores them (checked above)
        cols.append(sql.SQL("{} AS {}").format(sql.Identifier(m[c]), sql.Identifier(k)) if m[c] is not None
                    else sql.SQL("{}.{}(NULL) AS {}").format(sql.Identifier(SCHEMA), sql.Identifier(k),
                                                              sql.Identifier(k)))
    return out + sql.SQL("SELECT {} FROM {}.{}").format(sql.SQL(", ").join(cols), sql.Identifier(cfg.schema),
                                                        sql.Identifier(m["table"]))


def key_functions(conn: psycopg.Connection, cfg: SourceConfig) -> list[sql.Composed]:
    """twotower.user_key(text) / video_key(text): a text id cast to the app's id type. Plain SQL,
    IMMUTABLE and without a SET clause on purpose: PostgreSQL inlines such a function, so
    `user_key = twotower.user_key($1)` becomes `user_id = $1::uuid` and the app's index serves it
    (a pinned search_path would stop the inlining; the body names only a built-in type)."""
    out = []
    for fn, view, col in (("user_key", VIEWS[4], "user_id"), ("video_key", VIEWS[1], "id")):
        m = mapping(cfg, view)
        typ = "text"
        if m["table"] is not None and m[col] is not None:
            typ = conn.execute("SELECT format_type(a.atttypid, NULL) FROM pg_attribute a JOIN pg_class c ON "
                               "c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
                               "AND c.relname = %s AND a.attname = %s", (cfg.schema, m["table"], m[col])).fetchone()[0]
        body = sql.SQL("SELECT $1") if typ == "text" else sql.SQL("SELECT $1::{}").format(sql.SQL(typ))
        out.append(sql.SQL("DROP FUNCTION IF EXISTS {}.{}(text) CASCADE").format(sql.Identifier(SCHEMA), sql.Identifier(fn)))
        out.append(sql.SQL("CREATE FUNCTION {}.{}(p_id text) RETURNS {} LANGUAGE sql IMMUTABLE PARALLEL SAFE "
                           "AS $fn${};$fn$").format(sql.Identifier(SCHEMA), sql.Identifier(fn), sql.SQL(typ), body))
    return out


def install(conn: psycopg.Connection, cfg: SourceConfig, demo: bool) -> None:
    """(Re)create the source views and record_decision for the current mapping, in the caller's
    transaction. `demo`: the source tables are the seed-shaped ones twotower created, so a decision
    for a user without a profile creates the profile (their foreign key needs it)."""
    for v in VIEWS:
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(v.name)))
    for stmt in key_functions(conn, cfg):  # first: an empty view's keys are typed by them
        conn.execute(stmt)
    for v in VIEWS:
        conn.execute(view_sql(conn, cfg, v))
    conn.execute(_record_decision(conn, cfg, demo))


def _record_decision(conn: psycopg.Connection, cfg: SourceConfig, demo: bool) -> sql.Composed:
    d = mapping(cfg, VIEWS[4])
    if d["table"] is None or any(d[c] is None for c in ("user_id", "video_id", "decision_type")):
        body = sql.SQL("SELECT NULL::timestamptz WHERE false")  # nowhere to write: the caller says so
        return _record_function(body)
    types = _columns(conn, cfg.schema, d["table"])
    table = sql.SQL("{}.{}").format(sql.Identifier(cfg.schema), sql.Identifier(d["table"]))

    def val(param: str, col: str) -> sql.Composable:
        return sql.SQL("{}::{}").format(sql.SQL(param), sql.SQL(types[d[col]]))

    cols = [sql.Identifier(d["user_id"]), sql.Identifier(d["video_id"]), sql.Identifier(d["decision_type"])]
    vals = [val("p_user_id", "user_id"), val("p_video_id", "video_id"), val("p_decision_type", "decision_type")]
    sets = [sql.SQL("{0} = excluded.{0}").format(sql.Identifier(d["decision_type"]))]
    if d["created_at"] is not None:
        cols.append(sql.Identifier(d["created_at"]))
        vals.append(sql.SQL("clock_timestamp()"))
        sets.append(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(d["created_at"])))
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}, {}) DO UPDATE SET {} ").format(
        table, sql.SQL(", ").join(cols), sql.SQL(", ").join(vals), cols[0], cols[1], sql.SQL(", ").join(sets))
    ret = sql.SQL("RETURNING {}").format(sql.Identifier(d["created_at"])) if d["created_at"] else \
        sql.SQL("RETURNING clock_timestamp()")
    prelude = sql.SQL("")
    if demo:
        p = mapping(cfg, VIEWS[0])
        prelude = sql.SQL("INSERT INTO {}.{} ({}) VALUES (p_user_id) ON CONFLICT DO NOTHING;\n").format(
            sql.Identifier(cfg.schema), sql.Identifier(p["table"]), sql.Identifier(p["user_id"]))
    return _record_function(prelude + insert + ret)


def _record_function(body: sql.Composable) -> sql.Composed:
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {}.record_decision(p_user_id text, p_video_id text, p_decision_type text) "
        "RETURNS timestamptz LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $fn$\n{};\n$fn$").format(
        sql.Identifier(SCHEMA), body)
