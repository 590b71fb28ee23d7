"""The command line as a user meets it: usage mistakes are one line and exit 2 (click's code);
a service that cannot start says why in one line."""

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from tests.helpers import load_world
from tests.test_serve import SVC, app_settings, setup_model
from twotower import registry
from twotower.serve import create_app


def twotower(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twotower.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [
    ["recommend", "u1", "--limit", "0"], ["synth", "--users", "abc"], ["recommend"],
    ["recommend", "u1", "--bogus"], ["no-such-command"], ["db", "reset"], ["models", "traffic"],
    ["serve", "--port", "http"], ["db", "status", "extra"],
])
def test_usage_errors_are_one_line_exit_2(args):
    p = twotower(*args)
    assert p.returncode == 2, (args, p.returncode, p.stderr[-500:])
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "RuntimeDirWarning" not in ln
             and "return Path(" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout


@pytest.mark.parametrize("args", [[], ["db"], ["models"]])
def test_a_group_without_a_command_shows_its_help_and_exits_2(args):
    p = twotower(*args)
    assert p.returncode == 2 and "Usage" in p.stdout + p.stderr and "Traceback" not in p.stdout + p.stderr


def test_serve_refuses_a_tampered_active_version_in_one_line(conn, settings, tmp_path):
    load_world(conn)
    art = setup_model(conn, settings, tmp_path)
    (art.path / "normalizer.json").write_text("{}")
    env = {"DATABASE_URL": settings.database_url, "TWOTOWER_HOME": str(settings.home),
           "TWOTOWER_JWT_SECRET": "x" * 32}
    p = twotower("serve", "--port", "1", env=env)
    assert p.returncode == 1, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "normalizer.json" in errors[0] and "Traceback" not in p.stderr


def test_a_bad_version_beside_a_good_one_is_reported_not_served(conn, settings, tmp_path):
    load_world(conn)
    setup_model(conn, settings, tmp_path, "good")
    bad = setup_model(conn, settings, tmp_path, "bad", activate=False)
    registry.set_traffic(conn, {"good": 0.5, "bad": 0.5})
    (bad.path / "vocab_tag.json").write_text("[]")
    with TestClient(create_app(app_settings(settings))) as c:
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready" and ready["models"] == ["good"] and "bad" in ready["failed"]
        assert ready["traffic"] == {"good": 0.5}
        for u in ("a", "b", "c", "d", "e", "f"):  # everyone is served by the version that loaded
            r = c.post("/v1/recommendations", json={"user_id": u}, headers=SVC).json()
            assert r["model_version"] in (None, "good")


def test_version():
    import subprocess
    import sys
    from pathlib import Path

    tt = Path(sys.executable).parent / "twotower"
    r = subprocess.run([str(tt), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("twotower ")


def test_recommend_an_unknown_user_and_summary_of_an_empty_database(conn, settings, tmp_path):
    env = {"DATABASE_URL": settings.database_url, "TWOTOWER_HOME": str(settings.home)}
    empty = twotower("summary", env=env)
    assert empty.returncode == 0 and "the database is empty" in empty.stdout
    load_world(conn)
    setup_model(conn, settings, tmp_path)
    conn.execute("INSERT INTO profiles (user_id) VALUES ('new-here')")
    conn.commit()
    known = conn.execute("SELECT user_id FROM user_video_decisions LIMIT 1").fetchone()[0]
    r = twotower("recommend", known, "new-here", "nobody-at-all", env=env)
    assert r.returncode == 1 and "unknown user nobody-at-all" in r.stderr and "Traceback" not in r.stderr
    assert known in r.stdout and "new-here: no decisions yet" in r.stdout.replace("\n", " ")


def test_tables_are_not_cut_to_80_columns_in_a_log(conn, settings, tmp_path):
    """Output to a pipe or a cron log is not a terminal: rich would cut tables to 80 columns."""
    load_world(conn)
    setup_model(conn, settings, tmp_path, "a-rather-long-version-name-for-cron-logs")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = subprocess.run([sys.executable, "-m", "twotower.cli", "models", "list"], capture_output=True, text=True,
                       timeout=60, env={**env, "DATABASE_URL": settings.database_url,
                                        "TWOTOWER_HOME": str(settings.home)}, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "a-rather-long-version-name-for-cron-logs" in r.stdout, r.stdout
    assert "videos embedded" in r.stdout


@pytest.mark.parametrize("args", [["--help"], ["models", "show", "--help"], ["export", "--help"],
                                  ["serve", "--help"]])
def test_help_has_no_type_artefacts(args):
    p = twotower(*args, env={"COLUMNS": "120"})
    assert p.returncode == 0, p.stderr
    assert "<bool>" not in p.stdout, p.stdout
    usage = next(ln for ln in p.stdout.splitlines() if "Usage:" in ln)
    assert "{" not in usage and "}" not in usage, usage
