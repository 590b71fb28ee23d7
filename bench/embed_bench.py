"""Embedding benchmark: embed + COPY + HNSW build for a synthetic catalogue, then recall@10/@50
of the HNSW search against exact search (numpy over the same vectors) for 1,000 random users at
the configured ef_search, and the query latency (plain, and with the decided-videos filter).

    python bench/embed_bench.py --videos 50000          # 10k users, 1M decisions
    python bench/embed_bench.py --videos 1000000        # 100k users, 10M decisions
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from _common import git_commit, machine, write_json  # noqa: E402
from _world import build_world  # noqa: E402

from twotower import db, embed  # noqa: E402
from twotower.config import load_config  # noqa: E402


def vectors(path: Path, col: str) -> tuple[np.ndarray, np.ndarray]:
    t = pq.read_table(path)
    return np.array(t[col].to_pylist()), np.stack(t["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--ef-search", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="reuse the world from an earlier run")
    a = ap.parse_args()
    users, decisions = (10_000, 1_000_000) if a.videos <= 100_000 else (100_000, 10_000_000)
    s, timings = build_world(f"embed-{a.videos}", users, a.videos, decisions, keep=a.keep)
    cfg = load_config()
    ef = a.ef_search or cfg.embedding.ef_search
    art_dir = s.path("artifacts") / "bench"
    vid, V = vectors(art_dir / "video_embeddings.parquet", "video_id")
    uid, U = vectors(art_dir / "user_embeddings.parquet", "user_id")
    rng = np.random.default_rng(0)
    pick = rng.choice(len(uid), size=min(a.queries, len(uid)), replace=False)
    r10, r50, lat, lat_f = [], [], [], []
    exact_ms = []
    with db.connection(s) as conn:
        for j in pick:
            q = U[j]
            t0 = time.perf_counter()
            exact = np.argpartition(-(V @ q), 50)[:50]
            exact = exact[np.argsort(-(V[exact] @ q))]
            exact_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            got = [v for v, _ in embed.search(conn, "bench", V.shape[1], q, 50, ef_search=max(ef, 50))]
            lat.append((time.perf_counter() - t0) * 1000)
            r10.append(len(set(vid[exact[:10]]) & set(got[:10])) / 10)
            r50.append(len(set(vid[exact]) & set(got)) / 50)
            t0 = time.perf_counter()
            embed.search(conn, "bench", V.shape[1], q, 20, user_id=str(uid[j]), ef_search=ef)
            lat_f.append((time.perf_counter() - t0) * 1000)
    res = {
        "videos": len(vid), "users": len(uid), "dim": int(V.shape[1]), "ef_search": ef,
        "hnsw_m": cfg.embedding.hnsw_m, "ef_construction": cfg.embedding.hnsw_ef_construction,
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in timings.items()},
        "recall@10": round(float(np.mean(r10)), 4), "recall@50": round(float(np.mean(r50)), 4),
        "query_top50_p50_ms": round(float(np.percentile(lat, 50)), 2),
        "query_top50_p99_ms": round(float(np.percentile(lat, 99)), 2),
        "query_top20_filtered_p50_ms": round(float(np.percentile(lat_f, 50)), 2),
        "query_top20_filtered_p99_ms": round(float(np.percentile(lat_f, 99)), 2),
        "numpy_exact_p50_ms": round(float(np.percentile(exact_ms, 50)), 2),
        "machine": machine(), "commit": git_commit(),
    }
    for k, v in res.items():
        print(f"{k}: {v}")
    write_json(f"embed_{a.videos}", res)


if __name__ == "__main__":
    main()
