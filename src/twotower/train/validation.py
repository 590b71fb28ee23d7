"""Scores on the validation slice: loss, AUC and NDCG@10 over every undecided video."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from twotower.config import Config
from twotower.metrics import auc_per_user, ranking_metrics, top_k
from twotower.model import TwoTower
from twotower.train.data import (
    Prepared,
    encode_items,
    encode_users,
)
from twotower.train.losses import bce_loss, margin_loss, softmax_loss

# --------------------------------------------------------------------------- evaluation on val

@torch.no_grad()
def validate(model: TwoTower, p: Prepared, cfg: Config, max_users: int = 2000) -> dict[str, float]:
    """val loss (BCE on val decisions + seeded sampled negatives), AUC, and NDCG@10 of val likes
    ranked over all videos not decided in the training part."""
    t = cfg.training
    val = p.split.val
    out: dict[str, float] = {}
    if val.height == 0:
        return out
    rng = np.random.default_rng(t.seed + 10_000)
    model.eval()
    item_vecs = encode_items(model, p)
    vu, vi = val["u"].to_numpy(), val["i"].to_numpy()
    vy = val["like"].to_numpy().astype(np.float32)
    liked_u = vu[vy > 0]
    neg_u = np.repeat(liked_u, t.negative_sampling_ratio)
    neg_i = rng.integers(0, p.catalog.n_items, size=neg_u.size)
    users = np.concatenate([vu, neg_u])
    items = np.concatenate([vi, neg_i])
    labels = np.concatenate([vy, np.zeros(neg_u.size, np.float32)])
    uniq, inv = np.unique(users, return_inverse=True)
    uvec = encode_users(model, p, uniq)
    scores = (uvec[torch.from_numpy(inv)] * item_vecs[torch.from_numpy(items)]).sum(-1)
    out["val_loss"] = _val_loss(t, scores, labels, uvec, inv, item_vecs, vi, vy, p)
    out["val_auc"] = auc_per_user(users, scores.numpy(), labels)
    if p.catalog.n_items <= 200_000 and liked_u.size:
        eval_users = np.unique(liked_u)
        if eval_users.size > max_users:
            eval_users = np.sort(rng.choice(eval_users, max_users, replace=False))
        out["val_ndcg@10"] = val_ndcg(p, eval_users, encode_users(model, p, eval_users).numpy(),
                                      item_vecs.numpy())
    return out


def val_ndcg(p: Prepared, users: np.ndarray, user_vecs: np.ndarray, item_vecs: np.ndarray) -> float:
    """NDCG@10 of these users' validation likes, ranking every video they did not decide in the
    training part (early stopping here, the candidate-vs-active comparison in retrain)."""
    n = p.catalog.n_items
    excl = sp.csr_matrix((np.ones(p.decided.size, np.float32), (p.decided // n, p.decided % n)),
                         shape=(p.catalog.n_users, n))[users]
    top = top_k(user_vecs @ item_vecs.T, 10, excl)
    return ranking_metrics(top, p.split.matrix("val")[users], [10]).get("ndcg@10", 0.0)


def _val_loss(t, scores, labels, uvec, inv, item_vecs, vi, vy, p: Prepared) -> float:
    """The training loss on the validation slice (so early stopping watches what is optimised)."""
    if t.loss == "bce":
        return float(bce_loss(scores, torch.from_numpy(labels)))
    n_like = int(vy.sum())
    if t.loss == "margin":
        r = t.negative_sampling_ratio
        pos = scores[: len(vy)][torch.from_numpy(vy > 0)]
        neg = scores[len(vy):].view(n_like, r)
        return float(margin_loss(pos[:, None], neg, t.margin))
    like = np.flatnonzero(vy > 0)
    u, v = uvec[torch.from_numpy(inv[like])], item_vecs[torch.from_numpy(vi[like])]
    log_q = torch.from_numpy(np.log((p.pop + 1.0) / (p.pop + 1.0).sum())).float()
    losses = []
    for s in range(0, like.size, t.batch_size):
        sl = slice(s, s + t.batch_size)
        ids = torch.from_numpy(vi[like][sl])
        losses.append(float(softmax_loss(u[sl], v[sl], ids, t.temperature,
                                         log_q[ids] if t.logq_correction else None)))
    return float(np.mean(losses)) if losses else math.nan




def _better(metric: str, new: float, best: float, min_delta: float) -> bool:
    if metric == "val_loss":
        return new < best - min_delta
    return new > best + min_delta
