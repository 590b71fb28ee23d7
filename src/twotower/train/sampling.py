"""Negative sampling (random / hard / popular) and the examples of one epoch."""

from __future__ import annotations

import numpy as np
import torch

from twotower.errors import ModelFitError
from twotower.model import TwoTower
from twotower.train.data import (
    Prepared,
    encode_items,
    encode_users,
)

# --------------------------------------------------------------------------- sampling

class NegativeSampler:
    """Negatives for a user: random (uniform), popular (by like count) and hard (the best-scored
    of a few random candidates under the item vectors cached at the start of the epoch).
    Draws that hit a video the user decided are dropped."""

    def __init__(self, p: Prepared, mix: dict[str, float], n_candidates: int = 16) -> None:
        self.p, self.mix, self.n_candidates = p, mix, n_candidates
        w = p.pop + 1.0
        self.pop_cdf = np.cumsum(w / w.sum())
        self.item_vecs: torch.Tensor | None = None

    def refresh(self, model: TwoTower) -> None:
        if self.mix.get("hard", 0) > 0:
            self.item_vecs = encode_items(model, self.p)

    def sample(self, users: np.ndarray, rng: np.random.Generator, model: TwoTower) -> tuple[np.ndarray, np.ndarray]:
        n_items = self.p.catalog.n_items
        kinds = rng.choice(3, size=users.size, p=[self.mix.get(k, 0.0) for k in ("random", "hard", "popular")])
        items = rng.integers(0, n_items, size=users.size)
        pop = kinds == 2
        items[pop] = np.minimum(np.searchsorted(self.pop_cdf, rng.random(pop.sum())), n_items - 1)
        hard = np.flatnonzero(kinds == 1)
        if hard.size and self.item_vecs is not None:
            cand = rng.integers(0, n_items, size=(hard.size, self.n_candidates))
            u = encode_users(model, self.p, users[hard])  # (H, D)
            s = torch.einsum("hd,hcd->hc", u, self.item_vecs[torch.from_numpy(cand)])
            items[hard] = cand[np.arange(hard.size), s.argmax(dim=1).numpy()]
        keys = users.astype(np.int64) * n_items + items
        pos = np.clip(np.searchsorted(self.p.decided, keys), 0, max(len(self.p.decided) - 1, 0))
        ok = self.p.decided[pos] != keys if len(self.p.decided) else np.ones(len(keys), bool)
        return users[ok], items[ok]




def _epoch_examples(fu, fi, fy, sampler: NegativeSampler, rng: np.random.Generator, t, model):
    """Shuffled (users, items, labels) for one epoch; the number of positives."""
    pos = fy.astype(bool)
    n_pos = int(pos.sum())
    if n_pos == 0:
        raise ModelFitError("no likes in the training window: nothing to learn from")
    if t.loss == "softmax":
        order = rng.permutation(np.flatnonzero(pos))
        return fu[order], fi[order], np.ones(order.size, np.float32), n_pos, t.batch_size
    r = t.negative_sampling_ratio
    if t.loss == "margin":
        pu, pi = fu[pos], fi[pos]
        nu, ni = sampler.sample(np.repeat(pu, r), rng, model)
        # keep complete groups [pos, neg x r]: resample the few dropped draws uniformly
        if nu.size < pu.size * r:
            extra = pu.size * r - nu.size
            nu = np.concatenate([nu, np.repeat(pu, r)[:extra]])
            ni = np.concatenate([ni, rng.integers(0, sampler.p.catalog.n_items, extra)])
        order = np.argsort(np.repeat(np.arange(pu.size), r), kind="stable")
        groups = np.concatenate([np.stack([pu, pi], 1)[:, None, :],
                                 np.stack([nu[order], ni[order]], 1).reshape(pu.size, r, 2)], axis=1)
        g = groups[rng.permutation(pu.size)].reshape(-1, 2)
        labels = np.tile(np.r_[1.0, np.zeros(r)], pu.size).astype(np.float32)
        bsz = max(t.batch_size - t.batch_size % (r + 1), r + 1)  # batches hold whole groups
        return g[:, 0], g[:, 1], labels, n_pos, bsz
    nu, ni = sampler.sample(np.repeat(fu[pos], r), rng, model)
    users = np.concatenate([fu, nu])
    items = np.concatenate([fi, ni])
    labels = np.concatenate([fy.astype(np.float32), np.zeros(nu.size, np.float32)])
    order = rng.permutation(users.size)
    return users[order], items[order], labels[order], n_pos, t.batch_size
