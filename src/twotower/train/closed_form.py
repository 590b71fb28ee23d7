"""The hybrid's closed-form start (truncated SVD of EASE's item-item matrix, or of the like
matrix) and the content MLP distilled onto the ID vectors, for videos with no decision yet."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from twotower.config import Config
from twotower.evaluate.baselines import Context, EASERec
from twotower.evaluate.splits import Split
from twotower.model import MeanOf, TwoTower
from twotower.train.data import (
    Prepared,
)

# --------------------------------------------------------------------------- closed-form init

def init_hybrid(model: TwoTower, p: Prepared, cfg: Config, part: str, ctx_split: Split,
                lam: float | None = None) -> dict[str, Any]:
    """W, V from a truncated SVD: of EASE's B (model.init = ease_svd) or of the like matrix
    (svd). B ~ U S V' gives W = U sqrt(S), V = V sqrt(S), so x_u W V' ~ x_u B."""
    ids = np.flatnonzero(p.cat2model >= 0)
    likes = getattr(ctx_split, part).filter(pl.col("like"))
    x = sp.csr_matrix((np.ones(likes.height, dtype=np.float32),
                       (likes["u"].to_numpy(), p.cat2model[likes["i"].to_numpy()])),
                      shape=(p.catalog.n_users, ids.size))
    x.data[:] = 1.0
    d = cfg.model.embedding_dim
    info: dict[str, Any] = {"init": cfg.model.init}
    if cfg.model.init == "ease_svd":
        lam = cfg.model.ease_lambda or lam or _tune_ease_lambda(ctx_split)
        _, b = EASERec.weights(x, lam)  # every ID'd video has a like: active == all
        target = torch.from_numpy(b)
        info["ease_lambda"] = lam
    else:
        target = None
    torch.manual_seed(cfg.training.seed)
    if target is not None:
        u_, s_, v_ = torch.svd_lowrank(target, q=min(d, ids.size - 1) + 10, niter=6)
    else:
        coo = x.tocoo()
        xt = torch.sparse_coo_tensor(np.vstack([coo.row, coo.col]).astype(np.int64), coo.data,
                                     size=x.shape, check_invariants=False).coalesce()
        _, s_, v_ = torch.svd_lowrank(xt, q=min(d, ids.size - 1) + 10, niter=6)
        u_ = v_  # PureSVD: W = V, V = V (score x_u V V')
        s_ = torch.ones_like(s_)
    k = min(d, s_.numel())
    root = s_[:k].sqrt()
    with torch.no_grad():
        model.user.history.weight.zero_()
        model.item.ids.weight.zero_()
        model.user.history.weight[: ids.size, :k] = u_[:, :k] * root
        model.item.ids.weight[: ids.size, :k] = v_[:, :k] * root
    return info


def _tune_ease_lambda(split: Split) -> float:
    rec = EASERec()
    rec.fit(Context(split, sp.csr_matrix((split.n_items, 1))))
    return float(rec.lam)


def distill_content(model: TwoTower, p: Prepared, cfg: Config, log: list[dict]) -> dict[str, Any]:
    """Teach the item content MLP to reproduce the ID vectors of known videos, so a video with no
    decision yet gets a vector in the same space. MSE, early stopping on held-out videos (the same
    for every member of an ensemble, so the average is scored on videos none of them fitted)."""
    content = model.item.content
    if content is None:
        return {}
    t = cfg.training
    ids = np.flatnonzero(p.cat2model >= 0)
    rng = np.random.default_rng(t.seed)
    perm = rng.permutation(ids)
    n_val = max(1, int(0.1 * perm.size))
    val, tr = perm[:n_val], perm[n_val:]
    target = model.item.ids.weight.detach()
    members = list(content.members) if isinstance(content, MeanOf) else [content]
    for prm in model.parameters():
        prm.requires_grad_(False)
    # member 0 goes on with the seed's stream (one MLP trains as it always did); the others
    # draw their batch order from their own
    each = [_distill_one(m, j, p, cfg, tr, val, target, rng if j == 0 else np.random.default_rng([t.seed, j]), log)
            for j, m in enumerate(members)]
    for prm in model.parameters():
        prm.requires_grad_(True)
    with torch.no_grad():
        content.eval()
        mse = float(F.mse_loss(content(p.item_x[val]), target[torch.from_numpy(p.cat2model[val])]))
    return {"distill_val_mse": mse} | ({"distill_member_val_mse": each} if len(members) > 1 else {})


def _distill_one(net: torch.nn.Module, member: int, p: Prepared, cfg: Config, tr: np.ndarray,
                 val: np.ndarray, target: torch.Tensor, rng: np.random.Generator, log: list[dict]) -> float:
    """One content MLP fitted to the ID vectors; returns its best held-out MSE."""
    t = cfg.training
    for prm in net.parameters():
        prm.requires_grad_(True)
    opt = torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    best, best_state, bad = math.inf, None, 0

    def loss_on(idx: np.ndarray) -> torch.Tensor:
        return F.mse_loss(net(p.item_x[idx]), target[torch.from_numpy(p.cat2model[idx])])

    for epoch in range(t.distill_epochs):
        net.train()
        tr = rng.permutation(tr)
        for s in range(0, tr.size, t.batch_size):
            loss = loss_on(tr[s:s + t.batch_size])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), t.gradient_clip_norm)
            opt.step()
        net.eval()
        with torch.no_grad():
            vl = float(loss_on(val))
        log.append({"stage": "distill", "epoch": epoch, "val_mse": vl} | ({"member": member} if member else {}))
        if vl < best - t.min_delta * abs(best if math.isfinite(best) else 1):
            best, bad = vl, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= t.early_stopping_patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    for prm in net.parameters():
        prm.requires_grad_(False)
    return best
