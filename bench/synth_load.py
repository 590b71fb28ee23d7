"""Benchmark: generate a synthetic data set, load it with COPY, read it back as frames.

    python bench/synth_load.py                 # 100k users, 1M videos, 10M decisions
    python bench/synth_load.py --quick         # 10k / 50k / 1M
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import git_commit, machine, scratch_home, write_json  # noqa: E402

from twotower import db  # noqa: E402
from twotower.config import Settings  # noqa: E402
from twotower.data import load_frames, synth  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--videos", type=int, default=1_000_000)
    ap.add_argument("--decisions", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.users, a.videos, a.decisions = 10_000, 50_000, 1_000_000
    home = scratch_home(f"synth-{a.decisions}")
    shutil.rmtree(home, ignore_errors=True)
    s = Settings(TWOTOWER_HOME=home, DATABASE_URL=None)
    t = time.perf_counter()
    url = db.database_url(s)
    t_start = time.perf_counter() - t
    with db.connection(url=url) as conn:
        db.migrate(conn, demo_tables=True, roles=True)
        t0 = time.perf_counter()
        data = synth.generate(synth.SynthSpec(users=a.users, videos=a.videos, decisions=a.decisions, seed=1))
        t1 = time.perf_counter()
        counts = synth.load(conn, data)
        t2 = time.perf_counter()
        del data
        frames = load_frames(conn)
        t3 = time.perf_counter()
    db.stop_embedded(s)
    shutil.rmtree(home, ignore_errors=True)
    res = {
        "users": a.users, "videos": a.videos, "decisions": a.decisions, "rows": counts,
        "server_start_s": round(t_start, 1), "generate_s": round(t1 - t0, 1),
        "copy_load_s": round(t2 - t1, 1), "load_frames_s": round(t3 - t2, 1),
        "frames_decisions": frames.decisions.height, "machine": machine(), "commit": git_commit(),
    }
    print("| users | videos | decisions | generate | COPY load (+indexes, FKs, ANALYZE) | load_frames |")
    print("|---|---|---|---|---|---|")
    print(f"| {a.users:,} | {a.videos:,} | {a.decisions:,} | {res['generate_s']} s | "
          f"{res['copy_load_s']} s | {res['load_frames_s']} s |")
    write_json(f"synth_load_{'quick' if a.quick else 'full'}", res)


if __name__ == "__main__":
    main()
