"""How much of a cold-start figure is the seed: config/best.yaml retrained with several
training seeds on ml-latest-small's leak-free new-items split, per variant of the content path.

    python bench/cold_start_seeds.py
    python bench/cold_start_seeds.py --seeds 1,2,42 --variants text:1,text:5

A video nobody has decided gets its vector from the item tower's content MLP, distilled onto the
ID vectors of known videos; which MLP comes out depends on the seed (initial weights, batch order,
dropout), and the split has only 93 users with a test like among 1,857 new videos. So one run of
bench/quality.py is one draw. Each variant here is `item_inputs:content_ensemble` (text:5 = TF-IDF
of titles, five MLPs averaged); each is trained once per seed on the same split (the split's own
seed stays fixed) and scored by the same evaluator as bench/quality.py, beside the cold-start
baselines. Writes bench/results/cold_start_seeds.json (untracked).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MOVIELENS, git_commit, import_movielens, machine, write_json  # noqa: E402

from twotower.config import load_config  # noqa: E402
from twotower.evaluate import Catalog, build_context, evaluate_recommender, make_split  # noqa: E402
from twotower.evaluate.baselines import BASELINES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["ndcg@10", "recall@50", "mrr@10", "auc"]
BASELINE_NAMES = ["popularity", "content_knn", "genre_popularity", "recency"]


def variant_overrides(v: str) -> tuple[list[str], str]:
    """'text:5' -> config overrides and a label; '-' is no item inputs."""
    inputs, _, k = v.partition(":")
    items = [] if inputs in ("", "-") else inputs.split("+")
    return ([f"artifacts.item_inputs=[{','.join(items)}]", f"model.content_ensemble={int(k or 1)}"],
            f"item_inputs [{', '.join(items)}], content_ensemble {int(k or 1)}")


def main() -> None:
    from twotower.train import TrainedRecommender

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1,2,3,4,5,42", help="training seeds (42: the default)")
    ap.add_argument("--variants", default="-:1,text:1,text:5",
                    help="item_inputs (+-joined, '-' for none) : content_ensemble, comma-separated")
    ap.add_argument("--data", default=str(MOVIELENS))
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    t0 = time.perf_counter()
    s, frames = import_movielens("cold-start-seeds", a.data)
    cat = Catalog.from_frames(frames)
    cfg = load_config()
    split = make_split(cat, "new-items", 0.2, cfg.training.train_val_split, cfg.training.seed)
    ctx = build_context(cat, split, frames.tags, frames)
    out: dict = {"baselines": {}, "variants": {}}
    for name in BASELINE_NAMES:
        r = evaluate_recommender(BASELINES[name](), ctx, cfg.evaluation.ks)
        out["baselines"][name] = {k: round(r.metrics[k], 5) for k in KEYS}
        print(f"{name:18s} ndcg@10={r.metrics['ndcg@10']:.4f}", flush=True)
    for v in a.variants.split(","):
        over, label = variant_overrides(v)
        runs = []
        for seed in seeds:
            c = load_config(ROOT / "config" / "best.yaml", [*over, f"training.seed={seed}"])
            rec = TrainedRecommender(c, name=f"seed{seed}-{v}", checkpoint_dir=s.path("checkpoints"))
            r = evaluate_recommender(rec, ctx, cfg.evaluation.ks)
            runs.append({"seed": seed, **{k: round(r.metrics[k], 5) for k in KEYS},
                         "fit_seconds": round(r.fit_seconds, 1)})
            print(f"{label} seed {seed}: ndcg@10={r.metrics['ndcg@10']:.4f} recall@50={r.metrics['recall@50']:.4f} "
                  f"fit {r.fit_seconds:.1f}s", flush=True)
        out["variants"][label] = {"runs": runs, **{k: summary([x[k] for x in runs]) for k in [*KEYS, "fit_seconds"]}}
    shutil.rmtree(s.home, ignore_errors=True)
    out["_meta"] = {"split": split.describe(), "seeds": seeds, "machine": machine(), "commit": git_commit(),
                    "wall_seconds": round(time.perf_counter() - t0, 1)}
    best = max(out["baselines"].items(), key=lambda kv: kv[1]["ndcg@10"])
    print(f"\nbest cold-start baseline: {best[0]} ndcg@10 {best[1]['ndcg@10']:.4f}\n")
    print("| variant | ndcg@10 mean (min-max) | seeds above the best baseline | recall@50 mean (min-max) "
          "| auc mean | fit s |")
    print("|---|---|---|---|---|---|")
    for label, r in out["variants"].items():
        above = sum(x["ndcg@10"] > best[1]["ndcg@10"] for x in r["runs"])
        print(f"| {label} | {fmt(r['ndcg@10'])} | {above} of {len(r['runs'])} | {fmt(r['recall@50'])} | "
              f"{r['auc']['mean']:.4f} | {r['fit_seconds']['mean']:.0f} |")
    print("\nper seed, ndcg@10: " + "; ".join(
        f"{label}: " + ", ".join(f"{x['seed']} {x['ndcg@10']:.4f}" for x in r["runs"])
        for label, r in out["variants"].items()))
    print(f"\nwall time {out['_meta']['wall_seconds']} s")
    write_json("cold_start_seeds", out)


def summary(xs: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(xs), 5), "min": min(xs), "max": max(xs),
            "stdev": round(statistics.stdev(xs), 5) if len(xs) > 1 else 0.0}


def fmt(s: dict) -> str:
    return f"{s['mean']:.4f} ({s['min']:.4f}-{s['max']:.4f})"


if __name__ == "__main__":
    main()
