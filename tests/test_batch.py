import http.server
import json
import threading

import numpy as np
import pytest

from tests.conftest import count
from tests.helpers import exported, load_world
from twotower import batch, embed, registry
from twotower.config import BatchConfig, EmbeddingConfig
from twotower.errors import LockHeld, TwotowerError
from twotower.export import load_artifacts


@pytest.fixture
def served(conn, settings, tmp_path):
    load_world(conn)
    folder = exported(conn, settings, tmp_path)
    registry.register(conn, folder, settings.path("artifacts"))
    art = load_artifacts(settings.path("artifacts") / "v1")
    embed.embed_videos(conn, art, EmbeddingConfig())
    registry.activate(conn, "v1")
    return art


def embeddings(conn, table="video_embeddings", col="video_id"):
    return {k: v.to_numpy() for k, v in conn.execute(
        f"SELECT {col}, embedding FROM {table} WHERE model_version = 'v1'").fetchall()}  # noqa: S608


def test_first_run_embeds_everything_then_only_changes(conn, settings, served):
    r = batch.run_batch_update(settings, BatchConfig())  # videos: as embedded (fingerprints); users: no watermark yet
    assert r.videos == 0 and r.users == count(conn, "user_embeddings") > 0
    r2 = batch.run_batch_update(settings, BatchConfig())
    assert (r2.videos, r2.users) == (0, 0)
    conn.execute("INSERT INTO videos (id, title, price) VALUES ('brand-new', 'New', 500)")
    conn.execute("INSERT INTO video_tags VALUES ('brand-new', 'tag_001')")
    conn.execute("UPDATE videos SET price = price * 2 WHERE id = 'v000'")
    conn.execute("INSERT INTO video_tags VALUES ('v001', 'tag_299') ON CONFLICT DO NOTHING")
    uid = conn.execute("SELECT user_id FROM user_video_decisions LIMIT 1").fetchone()[0]
    conn.execute("INSERT INTO user_video_decisions VALUES (%s, 'brand-new', 'like', now())", (uid,))
    r3 = batch.run_batch_update(settings, BatchConfig())
    assert (r3.videos, r3.users) == (3, 1)
    assert "brand-new" in embeddings(conn)
    runs = batch.last_runs(conn)
    assert [x[4] for x in runs[:3]] == ["success"] * 3
    # a video edited by hand, without touching updated_at (an app without one): found by its fingerprint
    conn.execute("ALTER TABLE videos DISABLE TRIGGER videos_touch_updated_at")
    conn.execute("UPDATE videos SET duration_seconds = coalesce(duration_seconds, 0) + 60 WHERE id = 'v002'")
    conn.execute("DELETE FROM video_tags WHERE video_id = 'v003'")
    conn.execute("ALTER TABLE videos ENABLE TRIGGER videos_touch_updated_at")
    r4 = batch.run_batch_update(settings, BatchConfig())
    assert r4.videos == 2
    assert r3.log_file.exists() and "success" in r3.log_file.read_text()


def test_killed_run_then_rerun_equals_uninterrupted(conn, settings, served, db_url, admin_url, tmp_path):
    conn.execute("UPDATE videos SET price = coalesce(price, 0) + 1")  # every video changed

    def die(kind, n):
        if kind == "videos" and n >= 200:
            raise KeyboardInterrupt  # like a kill between two batches

    with pytest.raises(KeyboardInterrupt):
        batch.run_batch_update(settings, BatchConfig(batch_size=100), on_batch=die)
    assert batch.last_runs(conn)[0][4] == "failed"
    batch.run_batch_update(settings, BatchConfig(batch_size=100))
    after_crash = embeddings(conn), embeddings(conn, "user_embeddings", "user_id")
    # the uninterrupted twin: re-embed everything from scratch and compare
    conn.execute("DELETE FROM video_embeddings")
    conn.execute("DELETE FROM user_embeddings")
    batch.run_batch_update(settings, BatchConfig(batch_size=100))
    clean = embeddings(conn), embeddings(conn, "user_embeddings", "user_id")
    for a, b in zip(after_crash, clean, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=1e-5)
    assert count(conn, "video_embeddings") == count(conn, "videos")


def test_concurrent_run_is_refused_by_the_lock(conn, settings, served):
    from twotower import db

    holder = db.connect(settings)
    holder.execute("BEGIN")
    holder.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (batch.LOCK_KEY,))
    try:
        with pytest.raises(LockHeld, match="another batch-update is running"):
            batch.run_batch_update(settings, BatchConfig())
    finally:
        holder.close()
    batch.run_batch_update(settings, BatchConfig())  # free again


def test_failure_posts_to_the_webhook(conn, settings, served, monkeypatch):
    got = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    import twotower.batch as b

    def broken(*a, **k):
        raise TwotowerError("feature function exploded")

    monkeypatch.setattr(b, "_embed_batch", broken)
    conn.execute("UPDATE videos SET price = coalesce(price, 0) + 1 WHERE id = 'v000'")
    with pytest.raises(TwotowerError):
        b.run_batch_update(settings, BatchConfig(webhook_url=url, max_retries=0))
    srv.shutdown()
    assert got and "batch-update failed" in got[0]["text"] and "exploded" in got[0]["error"]


def test_old_logs_are_pruned(tmp_path):
    import os
    import time

    old = tmp_path / "batch-update-old.log"
    new = tmp_path / "batch-update-new.log"
    old.write_text("x")
    new.write_text("y")
    os.utime(old, (time.time() - 8 * 86400,) * 2)
    assert batch.prune_logs(tmp_path, 7) == 1 and not old.exists() and new.exists()


def test_sigkilled_run_is_reported_interrupted_without_a_new_run(conn, settings, served):
    """A real SIGKILL after two committed batches: `batch-runs` says the run ended (not 'running')
    as soon as the server has ended the dead client's session (which releases the run lock; on a
    busy machine that takes a moment after the kill), and its progress count is what it had
    committed."""
    import os
    import subprocess
    import sys
    import time

    conn.execute("UPDATE videos SET price = coalesce(price, 0) + 1")
    script = (
        "import os, signal\n"
        "from twotower import batch\n"
        "from twotower.config import BatchConfig, Settings\n"
        f"s = Settings(DATABASE_URL={settings.database_url!r}, TWOTOWER_HOME={str(settings.home)!r})\n"
        "def die(kind, n):\n"
        "    if kind == 'videos' and n >= 200:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "batch.run_batch_update(s, BatchConfig(batch_size=100), on_batch=die)\n")
    p = subprocess.run([sys.executable, "-c", script], env={**os.environ}, capture_output=True, timeout=120)
    assert p.returncode == -9, p.stderr.decode()[-2000:]
    deadline = time.monotonic() + 10
    run = batch.last_runs(conn)[0]
    while run[4] == "running" and time.monotonic() < deadline:  # the backend still holds the lock
        time.sleep(0.05)
        run = batch.last_runs(conn)[0]
    assert run[4] == "failed" and "interrupted" in run[7]
    assert run[5] == 200  # videos_embedded: both committed batches, counted with them


@pytest.mark.parametrize("stage", ["unknown version", "model does not load", "no default version"])
def test_every_early_failure_is_a_failed_run_with_its_error(conn, settings, served, stage, tmp_path):
    """However early a run fails, batch_runs has it as failed with the error (and the webhook's
    run_id is that row)."""
    version = None
    if stage == "unknown version":
        version = "no-such-version"
    elif stage == "model does not load":
        conn.execute("UPDATE embedding_model_versions SET model_path = %s WHERE version = 'v1'", (str(tmp_path / "gone"),))
    else:
        conn.execute("UPDATE embedding_model_versions SET is_default = false, is_active = false")
    conn.commit()
    with pytest.raises(TwotowerError):
        batch.run_batch_update(settings, BatchConfig(max_retries=0), version=version)
    status, error = conn.execute("SELECT status, error FROM batch_runs ORDER BY id DESC LIMIT 1").fetchone()
    assert status == "failed" and error, (stage, error)


def test_a_failed_retrain_is_recorded(conn, settings, served, monkeypatch):
    from twotower import retrain as rt
    from twotower.config import load_config

    def broken(*a, **k):
        raise TwotowerError("training exploded")

    monkeypatch.setattr(rt, "train", broken)
    with pytest.raises(TwotowerError):
        rt.retrain(settings, load_config())
    row = conn.execute("SELECT job, status, error FROM batch_runs ORDER BY id DESC LIMIT 1").fetchone()
    assert row == ("retrain", "failed", "training exploded")
