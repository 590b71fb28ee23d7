"""Leak-free, deterministic splits of the decisions.

Every split returns train (what a model may learn from and what is excluded at ranking time),
test, and a validation slice of train (`fit` + `val`) for early stopping and tuning. Ties in
time are broken by import order (`seq`), then (user, video), so the same data always gives the
same split, whatever the ids look like.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import scipy.sparse as sp

from twotower.data.load import Frames
from twotower.errors import InvalidInput

SPLITS = ("temporal-user", "temporal-global", "random", "new-items")
RULES = {  # written into every report, so a figure says exactly what it was measured on
    "temporal-user": "per user, the last floor(f * n) decisions by (created_at, import order seq, user, video) are test",
    "temporal-global": "decisions at or after the cutoff are test",
    "random": "each decision is test with probability f (seeded)",
    "new-items": "videos first decided at or after the cutoff are held out entirely and ranked among themselves; "
                 "later decisions on older videos are dropped",
}
TRAIN_SPLITS = (*SPLITS, "none")  # none: train on everything (production), validate on each user's latest


@dataclass
class Catalog:
    """Index maps: user/item index <-> id, over every profile and every video."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    decisions: pl.DataFrame  # u, i (int32), like (bool), ts (datetime), plus ids

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_frames(cls, frames: Frames) -> Catalog:
        users = pl.concat([frames.profiles.select("user_id"),
                           frames.decisions.select("user_id")]).unique().sort("user_id")
        items = frames.videos.select(pl.col("id").alias("video_id")).sort("video_id")
        umap = users.with_row_index("u").with_columns(pl.col("u").cast(pl.Int32))
        imap = items.with_row_index("i").with_columns(pl.col("i").cast(pl.Int32))
        d = frames.decisions
        if "seq" not in d.columns:  # a frame built in memory: its row order is its import order
            d = d.with_row_index("seq").with_columns(pl.col("seq").cast(pl.Int64))
        # o: the position in (time, import order): ties in time follow the source's order (seq),
        # then (user, video) where the source keeps none, never the spelling of an id alone
        d = (d.join(umap, on="user_id").join(imap, on="video_id")
             .sort("created_at", "seq", "u", "i", nulls_last=True)
             .select("u", "i", (pl.col("decision_type") == "like").alias("like"),
                     pl.col("created_at").alias("ts"), "user_id", "video_id",
                     pl.int_range(pl.len(), dtype=pl.Int64).alias("o")))
        return cls(users["user_id"].to_numpy(), items["video_id"].to_numpy(), d)


@dataclass
class Split:
    name: str
    train: pl.DataFrame
    test: pl.DataFrame
    fit: pl.DataFrame  # train minus the validation slice
    val: pl.DataFrame
    n_users: int
    n_items: int
    candidates: np.ndarray | None = None  # rankable items (new-items split); None = all
    cutoff: datetime | None = None

    def matrix(self, part: str, likes_only: bool = True) -> sp.csr_matrix:
        """(n_users, n_items) binary CSR of a part ('train', 'test', 'fit', 'val')."""
        df = getattr(self, part)
        if likes_only:
            df = df.filter(pl.col("like"))
        return sp.csr_matrix((np.ones(df.height, dtype=np.float32),
                              (df["u"].to_numpy(), df["i"].to_numpy())),
                             shape=(self.n_users, self.n_items))

    def feature_time(self, part: str = "train") -> datetime | None:
        """When the item features of a model fitted on `part` are taken: the cutoff, or just
        after the part's last decision (nothing attached later may be used)."""
        if self.cutoff is not None:
            return self.cutoff
        d = getattr(self, part)
        return None if d.height == 0 else d["ts"].max() + timedelta(microseconds=1)

    def describe(self) -> dict:
        return {
            "split": self.name, "rule": RULES.get(self.name), "train": self.train.height, "test": self.test.height,
            "val": self.val.height, "test_users_with_likes": int(self.test.filter(pl.col("like"))["u"].n_unique()),
            "cutoff": str(self.cutoff) if self.cutoff else None,
            "candidates": None if self.candidates is None else int(self.candidates.size),
        }


def _per_user_tail(df: pl.DataFrame, frac: float) -> pl.Series:
    """Bool mask: the last floor(frac * n_u) decisions of each user by (time, import order)."""
    ranked = df.with_row_index("_r").sort("u", "o").with_columns(
        pos=pl.int_range(pl.len()).over("u"), n=pl.len().over("u"))
    ranked = ranked.with_columns(tail=pl.col("pos") >= pl.col("n") - (pl.col("n") * frac).floor())
    return ranked.sort("_r")["tail"]


def _global_tail(df: pl.DataFrame, frac: float) -> tuple[pl.Series, datetime]:
    cutoff = df["ts"].sort()[int(df.height * (1 - frac))] if df.height else None
    return df["ts"] >= cutoff, cutoff


def _random_tail(df: pl.DataFrame, frac: float, seed: int) -> pl.Series:
    rng = np.random.default_rng(seed)
    return pl.Series(rng.random(df.height) < frac)


def make_split(catalog: Catalog, name: str = "temporal-user", test_fraction: float = 0.2,
               val_fraction: float = 0.1, seed: int = 42, cutoff: datetime | None = None) -> Split:
    """Build a split by name. `cutoff` (temporal-global, new-items) overrides test_fraction."""
    if name not in TRAIN_SPLITS:
        raise InvalidInput(f"unknown split {name!r}: choose one of {', '.join(TRAIN_SPLITS)}")
    d = catalog.decisions
    if d.height == 0:
        raise InvalidInput("there are no decisions to split: import or generate data first")
    candidates = None
    if name == "none":
        test_mask = pl.Series(np.zeros(d.height, dtype=bool))
    elif name == "temporal-user":
        test_mask = _per_user_tail(d, test_fraction)
    elif name == "random":
        test_mask = _random_tail(d, test_fraction, seed)
    elif name == "temporal-global":
        if cutoff is None:
            test_mask, cutoff = _global_tail(d, test_fraction)
        else:
            test_mask = d["ts"] >= cutoff
    else:  # new-items: videos first seen at/after the cutoff are held out entirely
        if cutoff is None:
            _, cutoff = _global_tail(d, test_fraction)
        first = d.group_by("i").agg(pl.col("ts").min().alias("first"))
        new = first.filter(pl.col("first") >= cutoff)["i"]
        test_mask = d["i"].is_in(new.implode())
        # decisions after the cutoff on old videos are in neither part (future behaviour)
        d = d.filter(test_mask | (pl.col("ts") < cutoff))
        test_mask = d["i"].is_in(new.implode())
        candidates = np.sort(new.to_numpy())
    train, test = d.filter(~test_mask), d.filter(test_mask)
    if name == "random":
        vmask = _random_tail(train, val_fraction, seed + 1)
    elif name in ("temporal-user", "none"):
        vmask = _per_user_tail(train, val_fraction)
    else:
        vmask, _ = _global_tail(train, val_fraction)
    split = Split(name, train, test, train.filter(~vmask), train.filter(vmask),
                  catalog.n_users, catalog.n_items, candidates, cutoff)
    if name != "none" and test.filter(pl.col("like")).height == 0:
        raise InvalidInput(f"the {name} split leaves no test users with a like: use more data "
                           "or a larger test fraction")
    return split
