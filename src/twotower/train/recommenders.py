"""A checkpoint (or a configuration trained on the spot) as an evaluation recommender, and
`twotower train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from twotower.config import Config
from twotower.errors import InvalidInput
from twotower.evaluate.baselines import Context
from twotower.evaluate.splits import Catalog
from twotower.features import FeaturePipeline
from twotower.train.checkpoints import load_checkpoint, model_from_state
from twotower.train.data import (
    build,
    encode_items,
    encode_users,
)
from twotower.train.loop import TrainResult, train

# --------------------------------------------------------------------------- as a recommender

class CheckpointRecommender:
    """Scores with a saved checkpoint. Features and histories are rebuilt from the split's train
    part with the checkpoint's own pipeline; refuses a checkpoint trained on other data."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path = Path(path)
        self.state = load_checkpoint(self.path)
        self.name = name or self.path.parent.name or "checkpoint"

    def fit(self, ctx: Context) -> None:
        st = self.state
        if ctx.frames is None or ctx.catalog is None:
            raise InvalidInput("a two-tower model needs the full frames to build its features")
        if st["split"] != ctx.split.name:
            raise InvalidInput(
                f"{self.path} was trained on the {st['split']!r} split; evaluating it on "
                f"{ctx.split.name!r} would leak test decisions into training: train with "
                f"`twotower train --split {ctx.split.name}`")
        self.model = model = model_from_state(st)
        pipe = FeaturePipeline.from_dict(st["pipeline"])
        p = build(pipe, st["item_vocab"], ctx.frames, ctx.catalog, ctx.split, "train")
        self.item_vecs = encode_items(model, p).numpy()
        self.user_vecs = encode_users(model, p, np.arange(ctx.catalog.n_users)).numpy()

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.user_vecs[users] @ self.item_vecs.T


class TrainedRecommender(CheckpointRecommender):
    """Trains on the context's split, then scores like CheckpointRecommender (bench/quality.py)."""

    def __init__(self, cfg: Config, name: str, checkpoint_dir: Path, quiet: bool = True) -> None:
        self.cfg, self.name, self.dir, self.quiet = cfg, name, Path(checkpoint_dir) / name, quiet
        self.info: dict[str, Any] = {}

    def fit(self, ctx: Context) -> None:
        r = train(self.cfg, ctx.frames, ctx.catalog, ctx.split, self.dir, quiet=self.quiet)
        self.path, self.state = r.checkpoint, load_checkpoint(r.checkpoint)
        self.info = {"epochs_run": r.epochs_run, "train_seconds": round(r.seconds, 1),
                     "best_epoch": self.state["epoch"], **self.state["info"],
                     "feature_importance": r.importance, "history": r.history}
        super().fit(ctx)


def run_training(settings, cfg: Config, split_name: str = "temporal-user", name: str | None = None,
                 resume: bool = False, quiet: bool = False) -> TrainResult:
    """`twotower train`: load from the database, split, train; checkpoints under
    $TWOTOWER_HOME/checkpoints/<name>/ (best.pt, last.pt, config.json)."""
    from twotower import db
    from twotower.data import load_frames
    from twotower.evaluate.splits import make_split

    with db.connection(settings) as conn:
        db.ensure_schema(conn)
        frames = load_frames(conn)
    catalog = Catalog.from_frames(frames)
    split = make_split(catalog, split_name, cfg.evaluation.test_fraction, cfg.training.train_val_split,
                       cfg.training.seed)
    name = name or f"{cfg.model.kind}-{split_name}-{cfg.digest()}"
    out = settings.path("checkpoints") / name
    if not resume and (out / "last.pt").exists():
        for f in ("best.pt", "last.pt"):
            (out / f).unlink(missing_ok=True)
    return train(cfg, frames, catalog, split, out, resume=resume, quiet=quiet)
