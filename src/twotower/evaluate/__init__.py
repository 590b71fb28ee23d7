"""Evaluation: leak-free splits, strong baselines and ranking metrics, all on one protocol.

`evaluate_recommender` ranks every video a user has not decided in train (or only the split's
candidates, for new-items), for every user with at least one test like, in batches of users.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from twotower.data.load import Frames
from twotower.errors import InvalidInput, NotFound
from twotower.evaluate.baselines import BASELINES, Context, Recommender
from twotower.evaluate.splits import Catalog, Split, make_split
from twotower.metrics import (
    RatioCI,
    auc_per_user,
    catalog_coverage,
    diversity,
    novelty,
    paired_ratio_ci,
    per_user_metrics,
    ranking_metrics,
    top_k,
)

__all__ = ["Catalog", "Context", "ModelResult", "Split", "build_context", "evaluate_recommender",
           "make_split", "resolve_model"]

SEED_TARGETS = {"precision@10": 0.15, "recall@50": 0.30, "ndcg@10": 0.20, "coverage@10": 0.70}


@dataclass
class ModelResult:
    name: str
    metrics: dict[str, float]
    segments: dict[str, dict[str, float]] = field(default_factory=dict)
    fit_seconds: float = 0.0
    eval_seconds: float = 0.0
    info: dict = field(default_factory=dict)
    # one value per evaluated user (the split's users with a test like, in index order), so two
    # models on the same split can be compared user by user (compare_to)
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    users: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def compare_to(self, other: ModelResult, metric: str = "ndcg@10", seed: int = 0) -> RatioCI | None:
        """This model's `metric` as a multiple of `other`'s, with a paired bootstrap interval
        over the users both were scored on; None when either has no per-user values."""
        if metric not in self.per_user or metric not in other.per_user or \
                not np.array_equal(self.users, other.users):
            return None
        return paired_ratio_ci(self.per_user[metric], other.per_user[metric], seed=seed)


def item_tag_matrix(catalog: Catalog, tags: pl.DataFrame) -> sp.csr_matrix:
    imap = pl.DataFrame({"video_id": catalog.item_ids, "i": np.arange(catalog.n_items)})
    t = tags.join(imap, on="video_id")
    codes = t["tag_name"].cast(pl.Categorical).to_physical().to_numpy()
    n_tags = int(codes.max()) + 1 if codes.size else 1
    return sp.csr_matrix((np.ones(t.height), (t["i"].to_numpy(), codes)), shape=(catalog.n_items, n_tags))


def build_context(catalog: Catalog, split: Split, tags: pl.DataFrame,
                  frames: Frames | None = None) -> Context:
    t = split.feature_time("train")  # the baselines see the catalogue as of the training window too
    if frames is not None:
        frames = frames.as_of(t)
    if t is not None and "created_at" in tags.columns:
        tags = tags.filter(tags["created_at"].is_null() | (tags["created_at"] < t))
    return Context(split, item_tag_matrix(catalog, tags), frames, catalog)


def resolve_model(spec: str) -> Recommender:
    """A baseline name, or a path to a two-tower checkpoint."""
    if spec in BASELINES:
        return BASELINES[spec]()
    p = Path(spec)
    if p.suffix == ".pt" or p.exists() or "/" in spec:
        if not p.exists():
            raise NotFound(f"checkpoint {p} does not exist: train one with `twotower train`")
        from twotower.train import CheckpointRecommender

        return CheckpointRecommender(p)
    raise InvalidInput(f"unknown model {spec!r}: use one of {', '.join(BASELINES)} or a checkpoint path")


def evaluate_recommender(rec: Recommender, ctx: Context, ks: list[int], fit: bool = True,
                         batch_users: int = 512) -> ModelResult:
    s = ctx.split
    t0 = time.perf_counter()
    if fit:
        rec.fit(ctx)
    t1 = time.perf_counter()
    relevant = s.matrix("test")
    exclude = s.matrix("train", likes_only=False)
    users = np.flatnonzero(relevant.getnnz(axis=1) > 0)
    kmax = max(ks)
    mask = None
    if s.candidates is not None:
        mask = np.full(s.n_items, -np.inf, dtype=np.float32)
        mask[s.candidates] = 0.0
    test = s.test.sort("u")
    tu, ti, ty = test["u"].to_numpy(), test["i"].to_numpy(), test["like"].to_numpy()
    tops, auc_scores = [], np.empty(len(tu), dtype=np.float64)
    for start in range(0, len(users), batch_users):
        ub = users[start:start + batch_users]
        scores = np.asarray(rec.score(ub), dtype=np.float32)
        if mask is not None:
            scores = scores + mask
        tops.append(top_k(scores, kmax, exclude[ub]))
        lo, hi = np.searchsorted(tu, ub[0], "left"), np.searchsorted(tu, ub[-1], "right")
        rows = np.searchsorted(ub, tu[lo:hi])
        inb = (rows < len(ub)) & (ub[np.minimum(rows, len(ub) - 1)] == tu[lo:hi])
        part = np.full(hi - lo, np.nan)
        part[inb] = scores[rows[inb], ti[lo:hi][inb]]
        auc_scores[lo:hi] = part
    top = np.concatenate(tops) if tops else np.zeros((0, kmax), dtype=np.int64)
    rel = relevant[users]
    per_user = per_user_metrics(top, rel, ks)
    m = {k: float(v.mean()) for k, v in per_user.items()}  # ranking_metrics, without a second pass
    n_cat = s.n_items if s.candidates is None else s.candidates.size
    for k in ks:
        m[f"coverage@{k}"] = catalog_coverage(top[:, :k], n_cat)
    k10 = min(10, kmax)
    m[f"diversity@{k10}"] = diversity(top[:, :k10], ctx.item_tags)
    pop = np.asarray(s.matrix("train", likes_only=False).sum(axis=0)).ravel()
    m[f"novelty@{k10}"] = novelty(top[:, :k10], pop, s.n_users)
    ok = np.isfinite(auc_scores)
    m["auc"] = auc_per_user(tu[ok], auc_scores[ok], ty[ok])
    m["users_evaluated"] = int(len(users))
    m["users_skipped_no_test_like"] = int(len(np.unique(tu)) - len(users))
    segments = _segments(top, rel, users, s, ks)
    info = {k: v for k, v in getattr(rec, "info", {}).items() if k != "history"}
    return ModelResult(rec.name, m, segments, t1 - t0, time.perf_counter() - t1, info,
                       {k: v for k, v in per_user.items() if k.startswith("ndcg@")}, users)


def _segments(top: np.ndarray, rel: sp.csr_matrix, users: np.ndarray, s: Split,
              ks: list[int]) -> dict[str, dict[str, float]]:
    """NDCG@10 / Recall@max(K) for light, medium, heavy users (train-activity terciles), and
    recall on test likes of cold-start items (no train decision)."""
    kmax = max(ks)
    activity = np.bincount(s.train["u"].to_numpy(), minlength=s.n_users)[users]
    out = {}
    if len(users) >= 3:
        q1, q2 = np.quantile(activity, [1 / 3, 2 / 3])
        for name, sel in (("light users", activity <= q1),
                          ("medium users", (activity > q1) & (activity <= q2)),
                          ("heavy users", activity > q2)):
            if sel.any():
                mm = ranking_metrics(top[sel], rel[sel], [10, kmax])
                out[name] = {"ndcg@10": mm.get("ndcg@10", 0.0), f"recall@{kmax}": mm.get(f"recall@{kmax}", 0.0),
                             "users": int(sel.sum())}
    seen = np.bincount(s.train["i"].to_numpy(), minlength=s.n_items) > 0
    cold_rel = rel.multiply(sp.csr_matrix((~seen)[None, :].astype(np.float32))).tocsr()
    has = cold_rel.getnnz(axis=1) > 0
    if has.any():
        mm = ranking_metrics(top[has], cold_rel[has], [10, kmax])
        out["cold-start items"] = {"ndcg@10": mm.get("ndcg@10", 0.0),
                                   f"recall@{kmax}": mm.get(f"recall@{kmax}", 0.0), "users": int(has.sum())}
    return out
