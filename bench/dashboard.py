"""What building /dashboard costs on a served world (it runs at most once every 5 s, on a
connection of its own, never per recommendation request).

    python bench/dashboard.py --videos 50000   # reuses bench/rpc.py's world (built if missing)

Times `collect()` with the A/B read (what happens once a minute while the page is open), without
it (the A/B rows cached: every 5 s), and the HTML rendering, 10 times each, against the world's
database with 200,000 served lists over 30 days, 500,000 decisions and the embeddings."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _world  # noqa: E402
import numpy as np  # noqa: E402
from _common import git_commit, machine, write_json  # noqa: E402

from twotower import db  # noqa: E402
from twotower.serve import dashboard, dashboard_render  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--log-rows", type=int, default=200_000,
                    help="served lists the log should hold (synthetic ones are added, spread over 30 days)")
    a = ap.parse_args()
    _world.MODEL = [*_world.MODEL, "model.user_content=false"]
    s, _ = _world.build_world(f"rpc-{a.videos}", a.videos // 5, a.videos, a.videos * 10, keep=True)
    with db.connect(s) as c:
        have = c.execute("SELECT count(*) FROM twotower.recommendation_log").fetchone()[0]
        if have < a.log_rows:  # a month of a small app: 10 cards per list, random users and videos
            c.execute("""WITH va AS (SELECT array_agg(id ORDER BY id) AS a, count(*) AS n FROM twotower.src_videos),
                pu AS (SELECT array_agg(user_id ORDER BY user_id) AS a, count(*) AS n FROM twotower.src_profiles)
                INSERT INTO twotower.recommendation_log (user_id, model_version, source, video_ids, served_at)
                SELECT pu.a[1 + g %% pu.n], 'bench', CASE WHEN g %% 20 = 0 THEN 'cold_start' ELSE 'two_tower' END,
                       va.a[1 + (g * 7919) %% (va.n - 10) : 10 + (g * 7919) %% (va.n - 10)],
                       now() - (g %% 43200) * interval '1 minute'
                FROM generate_series(1, %s) g, va, pu""", (a.log_rows - have,))
            c.execute("ANALYZE twotower.recommendation_log")
        sizes = {t: c.execute(f"SELECT count(*) FROM twotower.{t}").fetchone()[0]
                 for t in ("recommendation_log", "batch_runs", "user_embeddings")}
        sizes["decisions"] = c.execute("SELECT count(*) FROM twotower.src_decisions").fetchone()[0]
        ops = c.execute(db.sql("ops_metrics")).fetchall()  # the service refreshes these in the background
    state = SimpleNamespace(db_ok=True, models={"bench": None}, failed={}, settings=s, url=db.database_url(s),
                            ops=ops)
    t_full, t_cached, t_render = [], [], []
    for _ in range(a.runs + 1):
        cache: dict = {}
        t0 = time.perf_counter()
        page = dashboard.collect(s, state, cache)  # with the A/B read (once a minute)
        t1 = time.perf_counter()
        page = dashboard.collect(s, state, cache)  # the A/B rows from the cache (every 5 s)
        t2 = time.perf_counter()
        html = dashboard_render.page(page)
        t3 = time.perf_counter()
        t_full.append((t1 - t0) * 1000)
        t_cached.append((t2 - t1) * 1000)
        t_render.append((t3 - t2) * 1000)
    assert page.error is None, page.error
    out = {"commit": git_commit(), "machine": machine(), "videos": a.videos, "rows": sizes,
           "build_with_ab_ms_p50": round(float(np.median(t_full[1:])), 1),
           "build_with_ab_ms_max": round(float(np.max(t_full[1:])), 1),
           "build_ab_cached_ms_p50": round(float(np.median(t_cached[1:])), 1),
           "render_ms_p50": round(float(np.median(t_render[1:])), 2), "html_kb": round(len(html) / 1024, 1),
           "arms": [x.version for x in page.arms]}
    print(json.dumps(out, indent=2))
    print(f"wrote {write_json(f'dashboard_{a.videos}', out)}")
    db.stop_embedded(s)


if __name__ == "__main__":
    main()
