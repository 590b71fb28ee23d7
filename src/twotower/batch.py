"""`twotower batch-update`: the scheduled embedding refresh (seed 000, batch embedding update).

Finds videos and users that are new or changed since the last successful run (a watermark in
batch_runs), embeds them in batches with the version's towers, upserts (idempotent), retries a
failed batch with backoff, records the run, writes a log file per run (old ones deleted) and can
POST a Slack-compatible message on failure. A transaction-level advisory lock, held on its own
connection for the whole run, keeps two runs from overlapping (and is released by the server if
the process dies, unlike a session lock stranded behind a transaction-mode pooler).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from twotower import db
from twotower.config import BatchConfig, Settings
from twotower.embed import item_vectors_online, upsert_vectors, user_vectors_online
from twotower.errors import LockHeld, TwotowerError
from twotower.export import load_artifacts

JOB = "embed-refresh"
LOCK_KEY = "twotower.batch-update"


@dataclass
class BatchResult:
    run_id: int
    version: str
    videos: int
    users: int
    seconds: float
    log_file: Path


def _logger(path: Path) -> logging.Logger:
    log = logging.getLogger(f"twotower.batch.{path.stem}")
    log.setLevel(logging.INFO)
    h = logging.FileHandler(path)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(h)
    return log


def prune_logs(folder: Path, days: int) -> int:
    cutoff = time.time() - days * 86400
    old = [f for f in folder.glob("batch-update-*.log") if f.stat().st_mtime < cutoff]
    for f in old:
        f.unlink(missing_ok=True)
    return len(old)


def notify(url: str, text: str, payload: dict) -> None:
    """Slack-compatible webhook ({"text": ...}); a failing webhook never hides the real error."""
    if not url:
        return
    try:
        httpx.post(url, json={"text": text, **payload}, timeout=10)
    except httpx.HTTPError:
        logging.getLogger(__name__).warning("webhook %s failed", url)


def _in_batches(ids: list[str], size: int):
    for s in range(0, len(ids), size):
        yield s // size, ids[s:s + size]


def run_batch_update(settings: Settings, cfg: BatchConfig, version: str | None = None,
                     on_batch: Callable[[str, int], None] | None = None) -> BatchResult:
    """One run. `on_batch(kind, n)` is called after each committed batch (progress; tests use it
    to simulate a crash)."""
    from twotower import registry

    logs = settings.path("logs")
    prune_logs(logs, cfg.log_retention_days)
    started = datetime.now(UTC)
    log_file = logs / f"batch-update-{started:%Y%m%dT%H%M%S%f}.log"
    log = _logger(log_file)
    lock_conn = db.connect(settings)
    conn = db.connect(settings)
    run_id = None
    try:
        lock_conn.execute("BEGIN")
        got = lock_conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (LOCK_KEY,)).fetchone()[0]
        if not got:
            raise LockHeld("another batch-update is running (advisory lock held): try again later")
        db.ensure_schema(conn)
        # The run is recorded before anything else can fail (an unknown version, a model that
        # does not load): every failure after this point is a failed run with its error.
        with conn.transaction():  # we hold the lock: any 'running' row is from a killed run
            conn.execute("UPDATE batch_runs SET status = 'failed', finished_at = now(), "
                         "error = 'interrupted (process ended)' WHERE job = %s AND status = 'running'", (JOB,))
            run_id = conn.execute("INSERT INTO batch_runs (job, model_version) VALUES (%s, %s) RETURNING id",
                                  (JOB, version)).fetchone()[0]
        v = registry.get(conn, version) if version else next(
            (x for x in registry.list_versions(conn) if x.is_default), None)
        if v is None:
            raise TwotowerError("no default model version: pass --version or activate one")
        art = load_artifacts(Path(v.model_path))
        with conn.transaction():
            row = conn.execute("SELECT max(watermark_to) FROM batch_runs WHERE job = %s AND model_version = %s"
                               " AND status = 'success'", (JOB, v.version)).fetchone()
            since = row[0]
            until = conn.execute("SELECT now()").fetchone()[0]
            conn.execute("UPDATE batch_runs SET model_version = %s, watermark_from = %s, watermark_to = %s "
                         "WHERE id = %s", (v.version, since, until, run_id))
        log.info("run %s: version %s, changes since %s", run_id, v.version, since)
        params = {"since": since, "version": v.version}
        videos = [r[0] for r in conn.execute(db.sql("batch_changed_videos"), params).fetchall()]
        users = [r[0] for r in conn.execute(db.sql("batch_changed_users"), params).fetchall()]
        conn.commit()
        log.info("%d videos and %d users to embed", len(videos), len(users))
        counts = {"videos": 0, "users": 0}
        for kind, ids, table, col in (("videos", videos, "video_embeddings", "video_id"),
                                      ("users", users, "user_embeddings", "user_id")):
            for b, chunk in _in_batches(ids, cfg.batch_size):
                done = counts[kind] + len(chunk)
                _with_retries(lambda chunk=chunk, kind=kind, table=table, col=col, done=done: _embed_batch(
                    conn, art, kind, table, col, chunk, run_id, done), cfg, log, f"{kind} batch {b}")
                counts[kind] = done
                if on_batch:
                    on_batch(kind, counts[kind])
        with conn.transaction():
            conn.execute("UPDATE batch_runs SET status = 'success', finished_at = now() WHERE id = %s", (run_id,))
        secs = (datetime.now(UTC) - started).total_seconds()
        log.info("success: %d videos, %d users in %.1fs", counts["videos"], counts["users"], secs)
        return BatchResult(run_id, v.version, counts["videos"], counts["users"], secs, log_file)
    except BaseException as e:
        log.error("failed: %s", e)
        if run_id is not None:
            try:
                conn.rollback()
                with conn.transaction():
                    conn.execute("UPDATE batch_runs SET status = 'failed', finished_at = now(), error = %s"
                                 " WHERE id = %s", (str(e)[:2000], run_id))
            except psycopg.Error:
                pass
        if not isinstance(e, LockHeld):
            notify(cfg.webhook_url, f":warning: twotower batch-update failed: {e}",
                   {"run_id": run_id, "log_file": str(log_file), "error": str(e)})
        raise
    finally:
        for c in (conn, lock_conn):
            try:
                c.close()
            except psycopg.Error:
                pass
        for h in list(log.handlers):
            h.close()
            log.removeHandler(h)


def _embed_batch(conn: psycopg.Connection, art, kind: str, table: str, col: str, ids: list[str], run_id: int,
                 done: int) -> None:
    """One batch and the run's progress count, in one transaction: a kill never leaves the count
    behind (or ahead of) what was written."""
    vecs = item_vectors_online(conn, art, ids) if kind == "videos" else user_vectors_online(conn, art, ids)[0]
    with conn.transaction():
        upsert_vectors(conn, table, col, art.version, ids, vecs)
        if kind == "videos":
            conn.execute(db.sql("video_fingerprints_set"), {"ids": ids, "version": art.version})
        conn.execute(db.sql(f"batch_progress_{kind}"), (done, run_id))


def _with_retries(fn: Callable[[], None], cfg: BatchConfig, log: logging.Logger, what: str) -> None:
    for attempt in range(cfg.max_retries + 1):
        try:
            return fn()
        except (psycopg.OperationalError, psycopg.errors.SerializationFailure,
                psycopg.errors.DeadlockDetected, OSError) as e:
            if attempt == cfg.max_retries:
                raise TwotowerError(f"{what} failed after {cfg.max_retries} retries: {e}") from e
            wait = cfg.backoff_seconds * 2 ** attempt
            log.warning("%s failed (%s); retry %d in %.1fs", what, e, attempt + 1, wait)
            time.sleep(wait)


def close_interrupted(conn: psycopg.Connection) -> int:
    """Mark as failed the 'running' rows of runs that died (SIGKILL, power loss): when nobody holds
    the run lock, no run is alive, whatever batch_runs says. Returns how many were closed."""
    with conn.transaction():
        if not conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (LOCK_KEY,)).fetchone()[0]:
            return 0  # a run is alive: its row is right to say 'running'
        cur = conn.execute("UPDATE batch_runs SET status = 'failed', finished_at = now(), "
                           "error = 'interrupted (process ended)' WHERE job = %s AND status = 'running'", (JOB,))
        return cur.rowcount


def last_runs(conn: psycopg.Connection, n: int = 10) -> list[tuple]:
    close_interrupted(conn)
    rows = conn.execute("SELECT id, model_version, started_at, finished_at, status, videos_embedded, "
                        "users_embedded, error FROM batch_runs ORDER BY id DESC LIMIT %s", (n,)).fetchall()
    conn.commit()
    return rows
