"""recommend_videos (the SQL path, `supabase.rpc('recommend_videos')`) against the bare query.

    python bench/rpc.py --videos 50000     # ~4 minutes with the world build; bench/results/rpc_<videos>.json (untracked)

A world like bench/serve.py's (10k users, 50k videos, 500k decisions) with a SQL-servable model
(hybrid, `model.user_content=false`: the user vector is summed in SQL from the history rows).
For 1,000 random users, interleaved user by user on one connection each:
- bare: the prepared top-20 HNSW query with the decided filter and the stored user vector as a
  parameter (bench/serve.py's "prepared" form);
- rpc: `SELECT * FROM recommend_videos(20)` as PostgREST runs it for a signed-in user: one
  transaction with `SET LOCAL ROLE authenticated` and `request.jwt.claims` set, then the call
  (timed whole, and the call alone);
- the SQL user vector of a heavy user with 1,000 likes (`sql_user_vector`, at max_history 200
  as the model is exported, and at 1,000);
- where the call's time goes: copies of `twotower.recommend` made for the run (and dropped after)
  without the reasons, without the two writes (recommendation_log, impressions) and without both,
  interleaved with the full one and the bare query on fresh users, plus the pieces called alone
  (the SQL user vector, the deck filter, the version's search function with a stored vector);
- MMR diversity: the call with p_diversity 0 and 0.5 (exploration off), interleaved per user;
- exploration: the call with p_explore_share 0 and 0.2 (the default), interleaved per user;
- impression discounting: a returning user whose last deck is past the TTL and unanswered, with
  serving.impression_discount 0.5 (the default) and 0, interleaved per user.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import _world  # noqa: E402
import numpy as np  # noqa: E402
from _common import git_commit, machine, write_json  # noqa: E402
from psycopg import sql as psql  # noqa: E402

from twotower import db  # noqa: E402


def pct(xs, p) -> float:
    return round(float(np.percentile(xs, p)), 3)


def variants(fn: str) -> dict[str, str]:
    """twotower.recommend's text with one part taken out at a time (the breakdown's copies)."""
    def cut(text: str, start: str, end: str) -> str:
        i = text.index(start)
        return text[:i] + text[text.index(end, i):]
    tail = "    )\n    SELECT s.video_id, s.score, CASE"
    no_reasons = fn.replace(
        "ELSE coalesce(tr.r, '{}') || coalesce(pr.r, '{}') END\n    FROM served s LEFT JOIN tag_reasons tr "
        "ON tr.ord = s.ord LEFT JOIN performer_reasons pr ON pr.ord = s.ord", "ELSE '{}'::text[] END\n    FROM served s")
    out = {"full": fn, "no_reasons": no_reasons, "no_writes": cut(fn, "    ), logged AS (", tail),
           "neither": cut(no_reasons, "    ), logged AS (", tail)}
    assert len(set(out.values())) == 4, "rpc.sql changed: update the breakdown's cuts"
    return {k: v.replace("twotower.recommend(", f"twotower.bench_recommend_{k}(", 1) for k, v in out.items()}


def breakdown(s, vecs: dict, bare, users: list[str]) -> dict:
    """p50 of the full call, of the copies without a part and of the pieces, interleaved user by user."""
    text = (Path(db.__file__).parent / "sql" / "rpc.sql").read_text()
    start = text.index("CREATE OR REPLACE FUNCTION twotower.recommend(")
    fns = variants(text[start:text.index("$fn$;", start) + 5])
    c, b = db.connect(s), db.connect(s)
    c.autocommit = True
    search = c.execute("SELECT twotower.search_function_name('bench')").fetchone()[0]
    pieces = {"sql_user_vector": "SELECT twotower.sql_user_vector('bench', %(u)s, 200)",
              "deck_filter": "SELECT * FROM twotower.deck_hidden(%(u)s)",
              "search_function": f"SELECT * FROM twotower.{search}(%(q)s, %(u)s, 20, '{{}}', '{{}}', '{{}}', '{{}}', 0)"}
    b.execute("SET hnsw.ef_search = 40; SET hnsw.iterative_scan = relaxed_order; SET plan_cache_mode = force_generic_plan")
    c.execute("SET hnsw.ef_search = 40; SET hnsw.iterative_scan = relaxed_order")
    for f in fns.values():
        c.execute(f)
    t: dict[str, list[float]] = {k: [] for k in ["bare", *fns, *pieces]}
    try:
        for i in range(len(users) // len(fns)):
            for j, k in enumerate(fns):  # each copy on its own fresh user (the writes change the next call)
                u = users[i * len(fns) + j]
                if j == 0:
                    q = vecs[u].to_numpy()
                    t0 = time.perf_counter()
                    b.execute(bare, {"q": q, "user_id": u}, prepare=True).fetchall()
                    t["bare"].append(time.perf_counter() - t0)
                    for name, stmt in pieces.items():
                        t0 = time.perf_counter()
                        c.execute(stmt, {"u": u, "q": q}, prepare=True).fetchall()
                        t[name].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                rows = c.execute(f"SELECT * FROM twotower.bench_recommend_{k}(%(u)s, 20)", {"u": u}, prepare=True).fetchall()
                t[k].append(time.perf_counter() - t0)
                assert len(rows) == 20
    finally:
        for k in fns:
            c.execute(f"DROP FUNCTION IF EXISTS twotower.bench_recommend_{k}")
        c.close()
        b.close()
    p50 = {k: pct(np.array(v[20:]) * 1000, 50) for k, v in t.items()}
    return {"users_per_copy": len(t["full"]) - 20, "p50_ms": p50,
            "ratio_to_bare": {k: round(v / p50["bare"], 2) for k, v in p50.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=50_000)
    ap.add_argument("--users", type=int, default=1000, help="users measured")
    ap.add_argument("--keep", action="store_true", help="reuse the world of an earlier run")
    a = ap.parse_args()
    _world.MODEL = [*_world.MODEL, "model.user_content=false"]
    s, _ = _world.build_world(f"rpc-{a.videos}", a.videos // 5, a.videos, a.videos * 10, keep=a.keep)
    bare_c, rpc_c = db.connect(s), db.connect(s)
    with db.connect(s) as c:
        assert c.execute("SELECT user_vector FROM embedding_model_versions WHERE version = 'bench'").fetchone()[0] == "sql"
        vecs = dict(c.execute("SELECT user_id, embedding FROM user_embeddings WHERE model_version = 'bench'").fetchall())
        dim = len(next(iter(vecs.values())).to_numpy())
    bare_c.execute("SET hnsw.ef_search = 40; SET hnsw.iterative_scan = relaxed_order; "
                   "SET plan_cache_mode = force_generic_plan")
    text = db.sql("hnsw_search").replace("%(version)s", "'bench'").replace("%(k)s", "20")
    bare = psql.SQL(text).format(dim=psql.Literal(dim))
    users = random.Random(0).sample(sorted(vecs), min(a.users, len(vecs)))
    taken = set(users)
    fresh = [u for u in random.Random(1).sample(sorted(vecs), len(vecs)) if u not in taken][:2 * a.users]
    t_bare, t_rpc, t_call = [], [], []
    for u in users[:50] + users:  # the first 50 warm the caches and are measured again
        q = vecs[u].to_numpy()
        t0 = time.perf_counter()
        bare_c.execute(bare, {"q": q, "user_id": u}, prepare=True).fetchall()
        t1 = time.perf_counter()
        with rpc_c.transaction():
            rpc_c.execute("SET LOCAL ROLE authenticated")
            rpc_c.execute("SELECT set_config('request.jwt.claims', %s, true)",
                          (json.dumps({"sub": u, "role": "authenticated"}),))
            t2 = time.perf_counter()
            rows = rpc_c.execute("SELECT * FROM recommend_videos(20)").fetchall()
            t3 = time.perf_counter()
        t4 = time.perf_counter()
        assert len(rows) == 20
        t_bare.append((t1 - t0) * 1000)
        t_call.append((t3 - t2) * 1000)
        t_rpc.append((t4 - t1) * 1000)
    t_bare, t_rpc, t_call = t_bare[50:], t_rpc[50:], t_call[50:]
    # a heavy user: 1,000 likes
    with db.connect(s) as c:
        c.execute("DELETE FROM user_video_decisions WHERE user_id = 'heavy'")
        c.execute("INSERT INTO profiles (user_id) VALUES ('heavy') ON CONFLICT DO NOTHING")
        c.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type, created_at) "
                  "SELECT 'heavy', id, 'like', now() - (row_number() OVER (ORDER BY id)) * interval '1 minute' "
                  "FROM (SELECT id FROM videos ORDER BY md5(id) LIMIT 1000) v")
        t_vec = {}
        for hist in (200, 1000):
            ts = []
            for _ in range(200):
                t0 = time.perf_counter()
                c.execute("SELECT twotower.sql_user_vector('bench', 'heavy', %s)", (hist,), prepare=True).fetchone()
                ts.append((time.perf_counter() - t0) * 1000)
            t_vec[hist] = {"p50_ms": pct(ts[20:], 50), "p99_ms": pct(ts[20:], 99)}
        c.execute("DELETE FROM user_video_decisions WHERE user_id = 'heavy'")
    parts = breakdown(s, vecs, bare, fresh)
    # MMR diversity: the same call with p_diversity 0 and 0.5 (twotower.mmr over a pool of 80 for
    # 20 cards), interleaved per user, impressions off so both see the same candidates
    t_mmr: dict[str, list[float]] = {"0": [], "0.5": []}
    with db.connect(s) as c:
        for i, u in enumerate(users[:50] + users):
            for d in (("0", "0.5") if i % 2 else ("0.5", "0")):
                t0 = time.perf_counter()
                rows = c.execute("SELECT * FROM recommend_videos(20, %s, NULL, false, %s, 0)", (u, float(d)),
                                 prepare=True).fetchall()
                t_mmr[d].append((time.perf_counter() - t0) * 1000)
                assert len(rows) == 20
            c.commit()
    mmr = {f"diversity_{d}": {"p50_ms": pct(ts[50:], 50), "p99_ms": pct(ts[50:], 99)} for d, ts in t_mmr.items()}
    # Exploration: p_explore_share 0 and 0.2 (serving.explore_share's default: 4 of 20 cards by
    # Thompson sampling over the pool of new videos), interleaved per user, impressions off
    # (warm users only: a cold user's deck is the popular list, with no exploration in it)
    t_x: dict[str, list[float]] = {"0": [], "0.2": []}
    with db.connect(s) as c:
        liked = {u for (u,) in c.execute("SELECT DISTINCT user_id FROM user_video_decisions "
                                         "WHERE user_id = ANY(%s) AND decision_type = 'like'", (users,))}
        warm = [u for u in users if u in liked]
        for i, u in enumerate(warm[:50] + warm):
            for x in (("0", "0.2") if i % 2 else ("0.2", "0")):
                t0 = time.perf_counter()
                rows = c.execute("SELECT * FROM recommend_videos(20, %s, NULL, false, 0, %s)", (u, float(x)),
                                 prepare=True).fetchall()
                t_x[x].append((time.perf_counter() - t0) * 1000)
                assert len(rows) == 20 and (x == "0") == (sum(r[3] == "explore" for r in rows) == 0), rows
            c.commit()
    explore = {f"explore_{x}": {"p50_ms": pct(ts[50:], 50), "p99_ms": pct(ts[50:], 99)} for x, ts in t_x.items()}
    explore["warm_users"] = len(warm)
    # Impression discounting: a returning user whose last deck of 20 is past the TTL, unanswered,
    # with serving.impression_discount at 0.5 (the default: a pool of 80 re-sorted in
    # twotower.mmr) and at 0 (the plain ranking), interleaved; each call rolled back so the
    # cards stay stale for the next
    t_disc: dict[str, list[float]] = {"0": [], "0.5": []}
    with db.connect(s) as c:
        for i, u in enumerate(users[:20] + users[:200]):
            if i == 20 or i == 0:  # the warm-up users come back below; start them afresh
                c.execute("DELETE FROM twotower.impressions")
                c.commit()
            c.execute("SELECT count(*) FROM recommend_videos(20, %s)", (u,)).fetchone()
            c.execute("UPDATE twotower.impressions SET last_served_at = now() - interval '2 days' WHERE user_id = %s", (u,))
            c.commit()
            for d in (("0", "0.5") if i % 2 else ("0.5", "0")):
                c.execute("UPDATE twotower.settings SET value = %s WHERE key = 'impression_discount'", (d,))
                c.commit()
                t0 = time.perf_counter()
                rows = c.execute("SELECT * FROM recommend_videos(20, %s)", (u,), prepare=True).fetchall()
                t_disc[d].append((time.perf_counter() - t0) * 1000)
                c.rollback()
                assert len(rows) == 20
        c.execute("UPDATE twotower.settings SET value = '0.5' WHERE key = 'impression_discount'")
        c.commit()
    discount = {f"discount_{d}": {"p50_ms": pct(ts[20:], 50), "p99_ms": pct(ts[20:], 99)} for d, ts in t_disc.items()}
    out = {
        "commit": git_commit(), "machine": machine(), "videos": a.videos, "users_measured": len(t_bare),
        "bare_prepared": {"p50_ms": pct(t_bare, 50), "p99_ms": pct(t_bare, 99)},
        "rpc_as_postgrest": {"p50_ms": pct(t_rpc, 50), "p99_ms": pct(t_rpc, 99)},
        "rpc_call_only": {"p50_ms": pct(t_call, 50), "p99_ms": pct(t_call, 99)},
        "ratio_p50_postgrest": round(pct(t_rpc, 50) / pct(t_bare, 50), 2),
        "ratio_p50_call": round(pct(t_call, 50) / pct(t_bare, 50), 2),
        "sql_user_vector_1000_likes": t_vec,
        "breakdown": parts,
        "mmr": mmr,
        "explore": explore,
        "impression_discount": discount,
    }
    print(json.dumps(out, indent=2))
    print(f"wrote {write_json(f'rpc_{a.videos}', out)}")
    db.stop_embedded(s)


if __name__ == "__main__":
    main()
