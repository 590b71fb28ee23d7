"""Ranking metrics, vectorised over users (no Python loop per user).

Conventions: `topk` is an (n_users, K) int array of item indices, best first, -1 for padding;
`relevant` is a CSR matrix (n_users, n_items) of test likes (binary relevance). Train's early
stopping and evaluate's report both rank with these functions (DESIGN §1: metrics sits low).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata


def hits_matrix(topk: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """(n_users, K) bool: is the item at each rank relevant for that user."""
    n_users, k = topk.shape
    n_items = relevant.shape[1]
    rel = relevant.tocoo()
    rel_keys = np.sort(rel.row.astype(np.int64) * n_items + rel.col)
    keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + topk
    pos = np.clip(np.searchsorted(rel_keys, keys), 0, max(len(rel_keys) - 1, 0))
    found = (rel_keys[pos] == keys) if len(rel_keys) else np.zeros_like(keys, dtype=bool)
    return found & (topk >= 0)


def ranking_metrics(topk: np.ndarray, relevant: sp.csr_matrix, ks: list[int]) -> dict[str, float]:
    """Precision, Recall, NDCG, MRR and HitRate at each K, averaged over users with >= 1 relevant
    item (the others are skipped; the caller reports how many)."""
    return {k: float(v.mean()) for k, v in per_user_metrics(topk, relevant, ks).items()}


def per_user_metrics(topk: np.ndarray, relevant: sp.csr_matrix, ks: list[int]) -> dict[str, np.ndarray]:
    """The same metrics, one value per user with >= 1 relevant item (in row order): what a
    paired comparison of two models on the same users resamples."""
    n_rel = np.asarray(relevant.sum(axis=1)).ravel()
    keep = n_rel > 0
    hits = hits_matrix(topk, relevant)[keep].astype(np.float64)
    n_rel = n_rel[keep]
    out: dict[str, np.ndarray] = {}
    if hits.shape[0] == 0:
        return out
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    for k in ks:
        h = hits[:, :k]
        n_hit = h.sum(axis=1)
        dcg = (h * discounts[:k]).sum(axis=1)
        ideal = np.cumsum(discounts[:k])[np.minimum(n_rel, k).astype(int) - 1]
        first = np.where(h.any(axis=1), h.argmax(axis=1) + 1, np.inf)
        out[f"precision@{k}"] = n_hit / k
        out[f"recall@{k}"] = n_hit / n_rel
        out[f"ndcg@{k}"] = dcg / ideal
        out[f"mrr@{k}"] = 1.0 / first
        out[f"hitrate@{k}"] = (n_hit > 0).astype(np.float64)
    return out


@dataclass(frozen=True)
class RatioCI:
    """mean(a) / mean(b) over the same users, with a percentile-bootstrap interval."""

    ratio: float
    low: float
    high: float
    users: int
    level: float = 0.95

    def __str__(self) -> str:
        return f"{self.ratio:.3f}x ({self.level:.0%} CI {self.low:.3f}-{self.high:.3f})"


def paired_ratio_ci(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, level: float = 0.95,
                    seed: int = 0) -> RatioCI:
    """How sure is "model A is r times model B": users are resampled with replacement, the same
    draw for both models (paired), so what is shared between them (easy and hard users) cancels.
    On a few hundred users a few percent is within the noise; this says how much."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_ratio_ci needs two per-user arrays of one length, got {a.shape} and {b.shape}")
    base = b.mean() if b.size else 0.0
    if base <= 0:
        return RatioCI(float("nan"), float("nan"), float("nan"), int(a.size), level)
    rng = np.random.default_rng(seed)
    ratios = np.empty(n_boot)
    for s in range(0, n_boot, 256):  # in blocks: (256, n) index draws, not (n_boot, n) at once
        idx = rng.integers(0, a.size, size=(min(256, n_boot - s), a.size))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[s:s + idx.shape[0]] = a[idx].mean(axis=1) / b[idx].mean(axis=1)
    lo, hi = np.nanquantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return RatioCI(float(a.mean() / base), float(lo), float(hi), int(a.size), level)


def catalog_coverage(topk: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's list."""
    items = topk[topk >= 0]
    return float(np.unique(items).size / n_items) if n_items else 0.0


def diversity(topk: np.ndarray, item_tags: sp.csr_matrix) -> float:
    """Mean Shannon entropy (bits) of the tag distribution within each list."""
    n_users, k = topk.shape
    valid = topk >= 0
    rows = np.repeat(np.arange(n_users), k)[valid.ravel()]
    lists = sp.csr_matrix((np.ones(rows.size), (rows, topk.ravel()[valid.ravel()])),
                          shape=(n_users, item_tags.shape[0]))
    counts = (lists @ item_tags).tocsr()  # (n_users, n_tags) tag counts per list
    totals = np.asarray(counts.sum(axis=1)).ravel()
    p = counts.data / np.repeat(np.maximum(totals, 1e-12), np.diff(counts.indptr))
    ent = np.zeros(n_users)
    np.add.at(ent, np.repeat(np.arange(n_users), np.diff(counts.indptr)), -p * np.log2(p))
    return float(ent[totals > 0].mean()) if (totals > 0).any() else 0.0


def novelty(topk: np.ndarray, item_popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information -log2(p(i)) of recommended items, p(i) = (users of i + 1)/(n + 1)."""
    p = (item_popularity + 1.0) / (n_users + 1.0)
    items = topk[topk >= 0]
    return float((-np.log2(p[items])).mean()) if items.size else 0.0


def auc_per_user(users: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over users (with both a like and a nope) of P(score(like) > score(nope)); ties count
    half. Vectorised with group-wise ranks."""
    if users.size == 0:
        return float("nan")
    order = np.argsort(users, kind="stable")
    u, s, y = users[order], scores[order], labels[order].astype(bool)
    g = rankdata(s, method="dense")  # global order, ties equal
    key = u.astype(np.float64) * (g.max() + 1) + g
    ranks = rankdata(key, method="average")
    uniq, start, counts = np.unique(u, return_index=True, return_counts=True)
    ranks -= np.repeat(start, counts)  # rank within the user's group, 1-based
    gid = np.repeat(np.arange(uniq.size), counts)
    n_pos = np.bincount(gid, weights=y, minlength=uniq.size)
    n_neg = counts - n_pos
    sum_pos = np.bincount(gid, weights=ranks * y, minlength=uniq.size)
    ok = (n_pos > 0) & (n_neg > 0)
    auc = (sum_pos[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    return float(auc.mean()) if ok.any() else float("nan")


def top_k(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None,
          row_offset: int = 0) -> np.ndarray:
    """Indices of the k best items per row, best first; `exclude` rows (offset by row_offset)
    are masked to -inf first. Returns -1 where fewer than k items are rankable.

    Ties are broken by item index (lower first), on every CPU: numpy's argpartition orders
    equal scores differently with and without AVX-512, and a baseline with many ties (a
    constant, a user with no profile) would score differently from one machine to the next."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    scores[np.isnan(scores)] = -np.inf
    if exclude is not None:
        block = exclude[row_offset: row_offset + scores.shape[0]].tocoo()
        scores[block.row, block.col] = -np.inf
    k = min(k, scores.shape[1])
    neg = -scores
    kth = np.partition(neg, k - 1, axis=1)[:, k - 1: k]  # minus the k-th best score of each row
    better, tied = neg < kth, neg == kth
    take = better | (tied & (np.cumsum(tied, axis=1) <= k - better.sum(axis=1, keepdims=True)))
    part = np.nonzero(take)[1].reshape(scores.shape[0], k)  # exactly k per row, ascending index
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    top[~np.isfinite(np.take_along_axis(part_scores, order, axis=1))] = -1
    return top
