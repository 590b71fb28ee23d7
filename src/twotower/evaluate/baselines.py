"""Baselines behind one small interface: fit(context) -> score(users) -> (B, n_items) scores.

Random, popularity, EASE (closed form, lambda chosen on the validation slice) and iALS
(the `implicit` package). EASE inverts an (n_items x n_items) matrix: fine to ~20k items on
this machine (9.7k: about 20 s); beyond that, restrict it to the most popular items or use iALS,
whose cost is linear in the number of interactions.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from twotower.data.load import Frames
from twotower.errors import InvalidInput
from twotower.evaluate.splits import Catalog, Split
from twotower.metrics import ranking_metrics, top_k

EASE_MAX_ITEMS = 30_000


@dataclass
class Context:
    """What a recommender may learn from: the split (train/fit/val) and item side info."""

    split: Split
    item_tags: sp.csr_matrix  # (n_items, n_tags) binary
    frames: Frames | None = None  # content models (two-tower) build their features from these
    catalog: Catalog | None = None


class Recommender(Protocol):
    name: str

    def fit(self, ctx: Context) -> None: ...

    def score(self, users: np.ndarray) -> np.ndarray: ...


class RandomRec:
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, ctx: Context) -> None:
        self.n_items = ctx.split.n_items

    def score(self, users: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed + int(users[0]) if len(users) else self.seed)
        return rng.random((len(users), self.n_items), dtype=np.float32)


class PopularityRec:
    """Count of likes in train: the bar every model must clear."""

    name = "popularity"

    def fit(self, ctx: Context) -> None:
        x = ctx.split.matrix("train")
        self.pop = np.asarray(x.sum(axis=0)).ravel().astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.pop, (len(users), self.pop.size))


# ------------------------------------------------------------------ cold start: ranks unseen videos
# Popularity scores every video nobody has decided 0 (on the new-items split: all of them, so its
# figure is only the order of ties). These can rank a video from what is known of it.

class ContentKNNRec:
    """Cosine between the video's tags (TF-IDF, L2) and the user's profile: the sum of the tag
    rows of the videos they liked in train."""

    name = "content_knn"

    def fit(self, ctx: Context) -> None:
        t = ctx.item_tags.tocsc().astype(np.float32)
        t.data[:] = 1.0
        df = np.asarray((t > 0).sum(axis=0)).ravel()
        idf = np.log((1 + t.shape[0]) / (1 + df)).astype(np.float32) + 1.0
        t = sp.csr_matrix(t @ sp.diags(idf))
        norms = np.sqrt(np.asarray(t.multiply(t).sum(axis=1)).ravel())
        self.t = sp.csr_matrix(sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ t)
        self.x = ctx.split.matrix("train")

    def score(self, users: np.ndarray) -> np.ndarray:
        prof = (self.x[users] @ self.t).toarray()
        n = np.linalg.norm(prof, axis=1, keepdims=True)
        prof = np.divide(prof, n, out=np.zeros_like(prof), where=n > 0)
        return np.asarray(self.t @ prof.T).T.astype(np.float32)


class GenrePopularityRec:
    """Train likes of the video's genre (ties: of its maker): popularity a new video inherits."""

    name = "genre_popularity"

    def fit(self, ctx: Context) -> None:
        import polars as pl

        if ctx.frames is None or ctx.catalog is None:
            raise InvalidInput("genre_popularity needs the videos frame")
        v = pl.DataFrame({"id": ctx.catalog.item_ids}).join(ctx.frames.videos.select("id", "genre", "maker"),
                                                             on="id", how="left")
        likes = np.asarray(ctx.split.matrix("train").sum(axis=0)).ravel()
        score = np.zeros(len(v), np.float64)
        for col, weight in (("genre", 1.0), ("maker", 1e-6)):
            codes = v[col].cast(pl.Categorical).to_physical().fill_null(-1).to_numpy().astype(np.int64)
            known = codes >= 0
            per = np.bincount(codes[known], weights=likes[known], minlength=codes.max() + 1 if known.any() else 0)
            score[known] += weight * per[codes[known]]
        self.pop = score.astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.pop, (len(users), self.pop.size))


class RecencyRec:
    """Newest first (release date, else when the video was added)."""

    name = "recency"

    def fit(self, ctx: Context) -> None:
        import polars as pl

        if ctx.frames is None or ctx.catalog is None:
            raise InvalidInput("recency needs the videos frame")
        v = pl.DataFrame({"id": ctx.catalog.item_ids}).join(ctx.frames.videos, on="id", how="left")
        t = v.select(pl.coalesce("product_released_at", "created_at").dt.epoch("s")).to_series().fill_null(0)
        self.t = t.to_numpy().astype(np.float64)
        self.t = ((self.t - self.t.min()) / max(np.ptp(self.t), 1.0)).astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.t, (len(users), self.t.size))


def tune_on_validation(split: Split, grid, scorer) -> float:
    """The grid value whose model, fitted on split.fit, ranks split.val likes best (NDCG@10).
    `scorer(x_fit, value)` returns a function users -> (B, n_items) scores."""
    x_fit, x_val = split.matrix("fit"), split.matrix("val")
    decided = split.matrix("fit", likes_only=False)
    users = np.flatnonzero(np.asarray(x_val.sum(axis=1)).ravel() > 0)
    best = (-1.0, grid[0])
    for value in grid:
        top = top_k(scorer(x_fit, value)(users), 10, decided[users])
        best = max(best, (ranking_metrics(top, x_val[users], [10]).get("ndcg@10", 0.0), value))
    return best[1]


def spd_inverse(g: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix through Cholesky (overwrites g): the
    cubic step of EASE and of every closed form built like it."""
    from scipy.linalg import lapack

    c, info = lapack.spotrf(g, lower=False, overwrite_a=True)
    if info == 0:
        c, info = lapack.spotri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise InvalidInput(f"EASE: the Gram matrix is not positive definite (lapack info {info})")
    return np.triu(c) + np.triu(c, 1).T


class EASERec:
    """Embarrassingly Shallow Autoencoder (Steck 2019): B = I - P / diag(P), P = (X'X + lI)^-1."""

    name = "ease"
    grid = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)

    def __init__(self, lam: float | None = None) -> None:
        self.lam = lam

    @staticmethod
    def weights(x: sp.csr_matrix, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """(active items, B over them). Items nobody liked have an all-zero Gram column, so
        their B row/column is exactly zero: leaving them out changes no score and shrinks the
        cubic inversion. The inverse goes through Cholesky (the Gram matrix is SPD)."""
        active = np.flatnonzero(x.getnnz(axis=0) > 0)
        if active.size > EASE_MAX_ITEMS:
            raise InvalidInput(f"EASE needs an {active.size}x{active.size} matrix: too many items "
                               f"(limit {EASE_MAX_ITEMS}); use ials")
        xa = x[:, active]
        g = (xa.T @ xa).toarray().astype(np.float32)
        g[np.diag_indices_from(g)] += lam
        p = spd_inverse(g)
        b = -p / np.diag(p)
        b[np.diag_indices_from(b)] = 0.0
        return active, b

    @staticmethod
    def apply(x_rows: sp.csr_matrix, active: np.ndarray, b: np.ndarray, n_items: int) -> np.ndarray:
        out = np.zeros((x_rows.shape[0], n_items), dtype=np.float32)
        out[:, active] = x_rows[:, active] @ b
        return out

    def fit(self, ctx: Context) -> None:
        s = ctx.split
        if self.lam is None:
            def scorer(x_fit, lam):
                a, b = self.weights(x_fit, lam)
                return lambda u: self.apply(x_fit[u], a, b, s.n_items)

            self.lam = tune_on_validation(s, self.grid, scorer)
        self.x = s.matrix("train")
        self.active, self.b = self.weights(self.x, self.lam)
        self.info = {"lambda": self.lam, "lambda_grid": list(self.grid)}  # in report.json

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.apply(self.x[users], self.active, self.b, self.x.shape[1])


class IALSRec:
    """Implicit ALS (Hu et al. 2008) from the `implicit` package; alpha chosen on validation."""

    name = "ials"

    def __init__(self, factors: int = 64, reg: float = 0.05, iterations: int = 15) -> None:
        self.factors, self.reg, self.iterations = factors, reg, iterations
        self.alpha: float | None = None

    def _train(self, x: sp.csr_matrix, alpha: float):
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        m = AlternatingLeastSquares(factors=self.factors, regularization=self.reg,
                                    iterations=self.iterations, random_state=0)
        # implicit parallelises itself; a BLAS thread pool underneath only slows it down.
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m.fit((x * alpha).astype(np.float32).tocsr(), show_progress=False)
        return m

    def fit(self, ctx: Context) -> None:
        s = ctx.split
        if self.alpha is None:
            def scorer(x_fit, alpha):
                m = self._train(x_fit, alpha)
                return lambda u: m.user_factors[u] @ m.item_factors.T

            self.alpha = tune_on_validation(s, (1.0, 5.0, 20.0), scorer)
        self.model = self._train(s.matrix("train"), self.alpha)
        self.info = {"alpha": self.alpha, "factors": self.factors, "reg": self.reg}

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.model.user_factors[users] @ self.model.item_factors.T


BASELINES = {"random": RandomRec, "popularity": PopularityRec, "ease": EASERec, "ials": IALSRec,
             "content_knn": ContentKNNRec, "genre_popularity": GenrePopularityRec, "recency": RecencyRec}
