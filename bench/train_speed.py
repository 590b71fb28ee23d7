"""Training throughput: positive examples per second and the share of wall time spent outside
forward/backward (data preparation: sampling, batching, feature gathers), per epoch.

    python bench/train_speed.py                 # ml-latest-small and a 1M-decision synthetic set
    python bench/train_speed.py --only movielens
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MOVIELENS, git_commit, machine, write_json  # noqa: E402

from twotower.config import load_config  # noqa: E402
from twotower.data import importers, synth  # noqa: E402
from twotower.data.load import Frames  # noqa: E402
from twotower.evaluate import Catalog, make_split  # noqa: E402
from twotower.train import load_checkpoint, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "seed_v2 (mlp, bce, 3 negatives)": (ROOT / "config" / "seed_v2.yaml", ["training.epochs=2"]),
    "mlp, in-batch softmax": (ROOT / "config" / "seed_v2.yaml",
                              ["training.epochs=2", "training.loss=softmax", "training.batch_size=1024"]),
}


def movielens_frames() -> Frames:
    f = importers.read_movielens(MOVIELENS)
    videos = f.videos.drop("_row").with_columns(price=None, duration_seconds=None)
    import polars as pl

    videos = videos.with_columns(pl.col("price").cast(pl.Float64), pl.col("duration_seconds").cast(pl.Int64))
    d = f.decisions.drop("_row")
    tags = f.tags.drop("_row").unique()
    profiles = d.group_by("user_id").agg(pl.col("created_at").min())
    perf = pl.DataFrame(schema={"video_id": pl.Utf8, "performer_name": pl.Utf8})
    return Frames(profiles, videos, tags, perf, d)


def synthetic_frames() -> Frames:
    s = synth.generate(synth.SynthSpec(users=10_000, videos=50_000, decisions=1_000_000, seed=1))
    return Frames(s.profiles, s.videos, s.tags, s.performers, s.decisions)


def reproducibility(frames: Frames) -> list[dict]:
    """seed_v2 for 2 epochs, twice at 1 thread and twice at 2: the same seed and thread count
    must give the same weights bit for bit; another thread count need not."""
    import torch

    cat = Catalog.from_frames(frames)
    split = make_split(cat, "temporal-user")
    rows, states = [], {}
    for threads in (1, 2):
        for attempt in (0, 1):
            cfg = load_config(ROOT / "config" / "seed_v2.yaml", ["training.epochs=2", f"training.threads={threads}"])
            t0 = time.perf_counter()
            r = train(cfg, frames, cat, split, Path(tempfile.mkdtemp()), quiet=True)
            st = load_checkpoint(r.checkpoint)["model_state"]
            states[(threads, attempt)] = st
            e = [h for h in r.history if "loss" in h][-1]
            rows.append({"threads": threads, "attempt": attempt, "val_loss": e.get("val_loss"),
                         "val_ndcg@10": e.get("val_ndcg@10"), "positives_per_s": round(e["positives_per_s"]),
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(rows[-1], flush=True)

    def same(a, b):
        return all(torch.equal(states[a][k], states[b][k]) for k in states[a])

    rows.append({"bitwise_same_1_thread": same((1, 0), (1, 1)), "bitwise_same_2_threads": same((2, 0), (2, 1)),
                 "bitwise_same_1_vs_2": same((1, 0), (2, 0))})
    print(rows[-1])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["movielens", "synthetic"])
    ap.add_argument("--reproducibility", action="store_true",
                    help="only: seed_v2 twice at 1 and twice at 2 threads on ml-latest-small")
    a = ap.parse_args()
    out = {"machine": machine(), "commit": git_commit(), "runs": []}
    if a.reproducibility:
        out["reproducibility"] = reproducibility(movielens_frames())
        write_json("train_reproducibility", out)
        return
    datasets = {"ml-latest-small": movielens_frames, "synthetic 1M": synthetic_frames}
    for dname, make in datasets.items():
        if a.only and dname != {"movielens": "ml-latest-small", "synthetic": "synthetic 1M"}[a.only]:
            continue
        t0 = time.perf_counter()
        frames = make()
        cat = Catalog.from_frames(frames)
        split = make_split(cat, "temporal-user")
        t_data = time.perf_counter() - t0
        for cname, (path, ov) in CONFIGS.items():
            cfg = load_config(path, ov)
            t1 = time.perf_counter()
            r = train(cfg, frames, cat, split, Path(tempfile.mkdtemp()), quiet=True)
            epochs = [h for h in r.history if h.get("epoch", -1) >= 0 and "loss" in h]
            e = epochs[-1]
            row = {"data": dname, "config": cname, "decisions": frames.decisions.height,
                   "threads": load_checkpoint(r.checkpoint)["info"]["threads"],
                   "epoch_seconds": round(e["seconds"], 1), "positives_per_s": round(e["positives_per_s"]),
                   "prep_share": round(e["prep_share"], 3), "run_seconds": round(time.perf_counter() - t1, 1),
                   "frames_seconds": round(t_data, 1)}
            out["runs"].append(row)
            print(row, flush=True)
    print("\n| data | config | threads | epoch | positives/s | outside forward/backward |")
    print("|---|---|---|---|---|---|")
    for r in out["runs"]:
        print(f"| {r['data']} | {r['config']} | {r['threads']} | {r['epoch_seconds']} s | {r['positives_per_s']:,} "
              f"| {r['prep_share']:.0%} |")
    write_json("train_speed", out)


if __name__ == "__main__":
    main()
