"""Permutation feature importance of the user tower's inputs, on the validation slice: shuffle
one input block across the evaluated users (so its values stay realistic but stop belonging to
the user), re-encode them, and report how much NDCG@10 of their validation likes drops. Each
numeric feature on its own, then the hour, the tag bag, the performer bag and the like history.
A block the model does not read (the history-only `sql` hybrid's content features) scores 0."""

from __future__ import annotations

import numpy as np
import torch

from twotower.model import TwoTower
from twotower.train.data import Prepared, encode_items
from twotower.train.validation import val_ndcg

MAX_USERS = 1000
REPEATS = 2


def blocks(p: Prepared) -> list[tuple[str, slice | None]]:
    """(name, columns of user_x) for every input; None for the history."""
    out: list[tuple[str, slice | None]] = []
    for b in p.pipeline.schema()["user"]["blocks"]:
        off, n = b["offset"], b["length"]
        if b["name"] == "user_numeric":
            out.extend((f"user_numeric.{f}", slice(off + k, off + k + 1)) for k, f in enumerate(b["features"]))
        elif n:
            out.append((b["name"], slice(off, off + n)))
    return [*out, ("history", None)]


@torch.no_grad()
def permutation_importance(model: TwoTower, p: Prepared, seed: int) -> dict[str, float]:
    """{input: NDCG@10 without it minus NDCG@10 with it shuffled}, averaged over REPEATS
    shuffles; empty when the validation slice has no likes."""
    val = p.split.val
    if val.height == 0:
        return {}
    liked = np.unique(val["u"].to_numpy()[val["like"].to_numpy().astype(bool)])
    if liked.size < 2 or p.catalog.n_items > 200_000:
        return {}
    rng = np.random.default_rng(seed + 20_000)
    users = np.sort(rng.choice(liked, min(MAX_USERS, liked.size), replace=False))
    model.eval()
    items = encode_items(model, p).numpy()
    x, hist = p.user_x[users], p.history[torch.from_numpy(users)]

    def score(x_: torch.Tensor, h_: torch.Tensor) -> float:
        return val_ndcg(p, users, model.user(x_, h_).numpy(), items)

    base = score(x, hist)
    out: dict[str, float] = {}
    for name, cols in blocks(p):
        drops = []
        for _ in range(REPEATS):
            perm = torch.from_numpy(rng.permutation(len(users)))
            if cols is None:
                drops.append(base - score(x, hist[perm]))
            else:
                xs = x.clone()
                xs[:, cols] = x[perm][:, cols]
                drops.append(base - score(xs, hist))
        out[name] = round(float(np.mean(drops)), 6)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
