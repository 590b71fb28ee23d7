"""Ablation of the seed's optional item inputs (genre / maker one-hots, TF-IDF of title +
description) on the new-items split, where the item tower's content path is all a video has.

    python bench/item_inputs.py                 # ml-latest-small and a synthetic world
    python bench/item_inputs.py --only movielens

`config/best.yaml` is trained once per variant of `artifacts.item_inputs` on the same leak-free
split (features as of its cutoff) and scored by the same evaluator as bench/quality.py, beside
the best cold-start baseline (content_knn). MovieLens has titles (the year and words such as
"II" or a franchise name) and one genre per movie (also among its tags), no makers and no
descriptions; the synthetic world has makers and genres that carry taste, and titles that do not
("Video N"). Writes bench/results/item_inputs.json (untracked).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MOVIELENS, git_commit, machine, scratch_home, write_json  # noqa: E402

from twotower import db  # noqa: E402
from twotower.config import Settings, load_config  # noqa: E402
from twotower.data import importers, load_frames, synth  # noqa: E402
from twotower.evaluate import Catalog, build_context, evaluate_recommender, make_split  # noqa: E402
from twotower.evaluate.baselines import BASELINES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "movielens": [[], ["genre"], ["text"], ["genre", "text"]],
    "synthetic": [[], ["genre"], ["maker"], ["genre", "maker"], ["genre", "maker", "text"]],
}
KEYS = ["ndcg@10", "recall@50", "mrr@10", "auc"]


def frames_for(name: str, settings: Settings, data: Path):
    with db.connection(settings) as conn:
        db.migrate(conn, demo_tables=True, roles=True)
        if name == "movielens":
            importers.ingest(conn, importers.read_movielens(data))
        else:
            synth.load(conn, synth.generate(synth.SynthSpec(users=3000, videos=6000, decisions=150_000, seed=7)))
        frames = load_frames(conn)
    db.stop_embedded(settings)
    return frames


def main() -> None:
    from twotower.train import TrainedRecommender

    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=list(VARIANTS))
    ap.add_argument("--data", default=str(MOVIELENS))
    a = ap.parse_args()
    out: dict[str, dict] = {"_meta": {"machine": machine(), "commit": git_commit()}}
    t0 = time.perf_counter()
    for world in [a.only] if a.only else list(VARIANTS):
        home = scratch_home(f"item-inputs-{world}")
        shutil.rmtree(home, ignore_errors=True)
        s = Settings(TWOTOWER_HOME=home, DATABASE_URL=None)
        frames = frames_for(world, s, Path(a.data))
        cat = Catalog.from_frames(frames)
        cfg = load_config()
        split = make_split(cat, "new-items", 0.2, cfg.training.train_val_split, cfg.training.seed)
        ctx = build_context(cat, split, frames.tags, frames)
        rows: dict[str, dict] = {}
        base = evaluate_recommender(BASELINES["content_knn"](), ctx, cfg.evaluation.ks)
        rows["content_knn"] = {k: round(base.metrics[k], 5) for k in KEYS}
        for inputs in VARIANTS[world]:
            label = "+".join(inputs) or "none"
            tcfg = load_config(ROOT / "config" / "best.yaml", [f"artifacts.item_inputs={inputs}"])
            rec = TrainedRecommender(tcfg, name=f"best[{label}]", checkpoint_dir=s.path("checkpoints"))
            r = evaluate_recommender(rec, ctx, cfg.evaluation.ks)
            rows[label] = {k: round(r.metrics[k], 5) for k in KEYS} | {"fit_seconds": round(r.fit_seconds, 1)}
            print(f"{world:10s} {label:20s} " + " ".join(f"{k}={r.metrics[k]:.4f}" for k in KEYS)
                  + f" fit {r.fit_seconds:.1f}s", flush=True)
        out[world] = {"split": split.describe(), "results": rows}
        shutil.rmtree(home, ignore_errors=True)
        print(f"\n### {world} (new-items)\n\n| item inputs | " + " | ".join(KEYS) + " |\n|---"
              + "|---" * len(KEYS) + "|")
        for label, m in rows.items():
            print(f"| {label} | " + " | ".join(f"{m[k]:.4f}" for k in KEYS) + " |")
    out["_meta"]["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"\nwall time {out['_meta']['wall_seconds']} s")
    write_json("item_inputs", out)


if __name__ == "__main__":
    main()
