"""Shared helpers for benchmark scripts: a scratch TWOTOWER_HOME, machine info, JSON output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MOVIELENS = SHARED / "datasets" / "ml-latest-small"


def scratch_home(name: str) -> Path:
    """A fresh TWOTOWER_HOME for one benchmark (its own embedded server)."""
    base = Path(os.environ.get("TWOTOWER_BENCH_HOME", tempfile.gettempdir()))
    home = base / f"twotower-bench-{name}"
    return home


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()}"


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
    return path


def import_movielens(name: str, data: str | Path = MOVIELENS):
    """(Settings, Frames) of a MovieLens directory imported into a fresh scratch home, whose
    embedded server is stopped again (the home stays: models trained later may write there)."""
    import shutil

    from twotower import db
    from twotower.config import Settings
    from twotower.data import importers, load_frames

    home = scratch_home(name)
    shutil.rmtree(home, ignore_errors=True)
    s = Settings(TWOTOWER_HOME=home, DATABASE_URL=None)
    with db.connection(s) as conn:
        db.migrate(conn, demo_tables=True, roles=True)
        importers.ingest(conn, importers.read_movielens(Path(data)))
        frames = load_frames(conn)
    db.stop_embedded(s)
    return s, frames
