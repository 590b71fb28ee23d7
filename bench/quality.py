"""Quality benchmark on real data: ml-latest-small, temporal-user 20% split.

    python bench/quality.py            # baselines + two-tower configurations
    python bench/quality.py --only popularity,ease

Imports ../shared/datasets/ml-latest-small into a scratch TWOTOWER_HOME, evaluates every model on
the same split, prints a markdown table and writes bench/results/quality.json
({model: {"ndcg@10": x, ...}}). The new-items split is reported beside it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MOVIELENS, git_commit, import_movielens, machine, write_json  # noqa: E402

from twotower.config import Settings, load_config  # noqa: E402
from twotower.evaluate import Catalog, build_context, evaluate_recommender, make_split  # noqa: E402
from twotower.evaluate.baselines import BASELINES  # noqa: E402
from twotower.evaluate.report import comparison_table, comparisons, markdown_table, targets_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TWO_TOWER = {  # name -> config file (trained by twotower.train on the split's fit/val)
    "twotower_seed_v2": ROOT / "config" / "seed_v2.yaml",
    "twotower_best": ROOT / "config" / "best.yaml",
}
# Baselines that can rank a video nobody has decided (popularity scores them all 0 there).
COLD_START = ["content_knn", "genre_popularity", "recency"]
KEYS = ["ndcg@10", "precision@10", "recall@10", "recall@20", "recall@50", "ndcg@20", "ndcg@50",
        "mrr@10", "hitrate@10", "auc", "coverage@10", "diversity@10", "novelty@10"]


def two_tower_recommender(name: str, settings: Settings):
    from twotower.train import TrainedRecommender

    return TrainedRecommender(load_config(TWO_TOWER[name]), name=name,
                              checkpoint_dir=settings.path("checkpoints"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--data", default=str(MOVIELENS))
    a = ap.parse_args()
    names = ["random", "popularity", "ease", "ials", *TWO_TOWER]
    if a.only:
        names = [n for n in a.only.split(",") if n]
    t0 = time.perf_counter()
    s, frames = import_movielens("quality", a.data)
    home = s.home
    cat = Catalog.from_frames(frames)
    cfg = load_config()
    out: dict[str, dict] = {}
    tables = {}
    for split_name in ("temporal-user", "new-items"):
        split = make_split(cat, split_name, 0.2, cfg.training.train_val_split, cfg.training.seed)
        ctx = build_context(cat, split, frames.tags, frames)
        results = []
        for n in names + (COLD_START if split_name == "new-items" and not a.only else []):
            if split_name == "new-items" and n in ("ease", "ials"):
                continue  # pure collaborative models cannot score videos nobody decided
            rec = BASELINES[n]() if n in BASELINES else two_tower_recommender(n, s)
            r = evaluate_recommender(rec, ctx, cfg.evaluation.ks)
            results.append(r)
            print(f"{split_name:14s} {n:18s} ndcg@10={r.metrics['ndcg@10']:.4f} fit {r.fit_seconds:.1f}s",
                  flush=True)
        key = "" if split_name == "temporal-user" else f"@{split_name}"
        vs = comparisons(results)  # x EASE (new-items: x popularity) with a paired bootstrap CI
        tables[split_name] = results, vs
        for r in results:
            out[r.name + key] = {k: round(r.metrics[k], 5) for k in KEYS if k in r.metrics} | {
                "fit_seconds": round(r.fit_seconds, 1), "segments": r.segments, **r.info} | (
                {"vs_reference": vs[r.name]} if r.name in vs else {})
        out.setdefault("_meta", {})[split_name] = split.describe()
    shutil.rmtree(home, ignore_errors=True)
    out["_meta"] |= {"data": a.data, "machine": machine(), "commit": git_commit(),
                     "wall_seconds": round(time.perf_counter() - t0, 1)}
    for split_name, (results, vs) in tables.items():
        print(f"\n### {split_name}\n")
        print(markdown_table(results))
        print("\n" + comparison_table(vs))
    print("\n### seed targets (temporal-user)\n")
    print(targets_table(tables["temporal-user"][0]))
    print(f"\nwall time {out['_meta']['wall_seconds']} s")
    write_json("quality", out)


if __name__ == "__main__":
    main()
