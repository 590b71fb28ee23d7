"""Account deletion: afterwards no row of twotower's schema mentions the user, in one transaction,
through the API (own token or service key, 403 for another user) and the CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from tests.test_serve import SVC, app_settings, rec, token, world  # noqa: F401 (fixture)
from twotower.serve import create_app

ROOT = Path(__file__).resolve().parents[1]


def mentions(conn, user_id: str) -> dict[str, int]:
    """Rows of every twotower table whose JSON form holds the user id as a value."""
    tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                         "WHERE table_schema = 'twotower' AND table_type = 'BASE TABLE'")]
    out = {}
    for t in tables:
        n = conn.execute(f"SELECT count(*) FROM twotower.{t} x WHERE EXISTS ("  # noqa: S608 (catalogue names)
                         "SELECT 1 FROM jsonb_each_text(to_jsonb(x)) j WHERE j.value = %s)", (user_id,)).fetchone()[0]
        if n:
            out[t] = n
    conn.commit()
    return out


def test_delete_forgets_everything_twotower_holds(world, settings):  # noqa: F811
    conn = world
    u = conn.execute("SELECT user_id FROM user_video_decisions GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    other = conn.execute("SELECT user_id FROM user_video_decisions WHERE user_id <> %s LIMIT 1", (u,)).fetchone()[0]
    conn.commit()
    with TestClient(create_app(app_settings(settings))) as client:
        assert rec(client, u).status_code == 200  # a served list, logged
        client.post(f"/v1/users/{u}/embedding", headers=token(u))
        assert client.delete(f"/v1/users/{u}", headers=token(other)).status_code == 403
        assert client.delete(f"/v1/users/{u}").status_code == 401
        import time

        time.sleep(1.5)  # the log flush
        assert mentions(conn, u)  # there was something to forget
        r = client.delete(f"/v1/users/{u}", headers=token(u))
        assert r.status_code == 200 and r.json()["deleted"]["user_embeddings"] >= 1, r.text
        time.sleep(1.5)
        assert mentions(conn, u) == {}
        assert mentions(conn, other)  # nobody else was touched
        assert client.delete(f"/v1/users/{other}", headers=SVC).status_code == 200
    assert mentions(conn, other) == {}
    # the app's own tables are the app's
    assert conn.execute("SELECT count(*) FROM user_video_decisions WHERE user_id = %s", (u,)).fetchone()[0] > 0


def test_users_delete_cli(world, settings):  # noqa: F811
    conn = world
    u = conn.execute("SELECT user_id FROM user_embeddings LIMIT 1").fetchone()[0]
    conn.commit()
    env = {**os.environ, "DATABASE_URL": settings.database_url, "TWOTOWER_HOME": str(settings.home)}
    tt = str(ROOT / ".venv" / "bin" / "twotower")
    no = subprocess.run([tt, "users", "delete", u], capture_output=True, text=True, env=env, timeout=120)
    assert no.returncode == 1 and "--yes" in no.stderr and mentions(conn, u)
    ok = subprocess.run([tt, "users", "delete", u, "--yes"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and f"forgot {u}" in ok.stdout, ok.stderr
    assert mentions(conn, u) == {}
