"""What was tried to get past EASE on ml-latest-small (issue: NDCG@10 >= 1.05x EASE), each
variant scored the honest way and the hopeful way.

    python bench/past_ease.py                 # every family (about 11 minutes on 2 cores)
    python bench/past_ease.py --only ease,dae

Same data and split as bench/quality.py (temporal-user, 20%). For every family the
hyperparameters are chosen on the validation slice (fitted on `fit`, scored on `val`), then the
model is refitted on all of train and scored on test: that is the honest figure. Beside it, the
best test score over the same grid ("oracle"), an upper bound that shows how much room a family
has at all, and how wide the noise band of a single split is. Every family is a linear function
of the user's history except the Mult-DAE, so each could be served as one inner product.

Families (all closed forms are EASE-style: B = argmin ||Y - X B||^2 + lambda ||B||^2 with a zero
diagonal where an item could predict itself):
- ease: the baseline, lambda from 50 to 1600.
- nopes_input: the inputs are [likes, alpha * nopes] (nopes as a second channel of evidence).
- nopes_target: the targets are likes - gamma * nopes (learn to rank below what users nope).
- transitions: SLIST's mix (Choi et al., WWW 2021): alpha * (reconstruct the likes) +
  (1 - alpha) * (predict a user's later likes from their earlier ones, cut at 30/50/70/90%).
- edlae: EASE with Steck's (2020) dropout emphasis, lambda_i = lambda + p/(1-p) G_ii, with and
  without the zero diagonal (without: the denoising linear autoencoder, DLAE).
- rp3: EASE plus c times RP3beta (Paudel et al. 2017; a random-walk item-item matrix with popular
  items damped by popularity^beta), scaled to EASE's norm.
- popularity_cols: EASE's columns times popularity^-g (g > 0 favours the long tail).
- side_info: EASE over the likes plus one pseudo-user per tag (genres and user tags attached
  before the fitted part's last decision, used on 3+ videos) and per 5-year release period,
  weighted a and b (collective closed forms, Jeunen et al. 2020): content shapes B, and B is
  still applied to the likes alone. Also scored as served: B's exact truncated SVD at the
  two-tower's rank (config/best.yaml embedding_dim), beside plain EASE's at that rank.
- recent_popularity: EASE plus beta * log(1 + likes of the video in the `w` days before the
  user's own last fitted decision), from fitted rows only (nothing after that moment).
- dae: EASE plus c times a Mult-DAE (Liang et al. 2018; 600 tanh units, input dropout 0.5,
  multinomial likelihood), epoch and c (0 included) chosen on validation, three seeds, each
  alone and their average (one shared epoch and c). Not linear in the history: its user side
  is tanh(sum of W1 rows / sqrt(n) + b1), which the ONNX user tower (or SQL, element by
  element) would compute after the sum.

Writes bench/results/past_ease.json (untracked).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import scipy.linalg
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MOVIELENS, git_commit, import_movielens, machine, write_json  # noqa: E402

from twotower.config import load_config  # noqa: E402
from twotower.data.load import Frames  # noqa: E402
from twotower.evaluate import Catalog, make_split  # noqa: E402
from twotower.evaluate.baselines import EASERec, spd_inverse  # noqa: E402
from twotower.evaluate.splits import Split  # noqa: E402
from twotower.metrics import paired_ratio_ci, per_user_metrics, top_k  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAMBDAS = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)
FAMILIES = ("nopes_input", "nopes_target", "transitions", "edlae", "rp3", "popularity_cols",
            "side_info", "recent_popularity", "dae")


# ------------------------------------------------------------------ scoring on one part

def ndcg_users(split: Split, part: str, scores_of) -> np.ndarray:
    """Per-user NDCG@10 of `part` likes (val or test), ranking all videos not decided in the
    fitted part; users in index order (the same for every family, so they can be paired)."""
    fitted = "fit" if part == "val" else "train"
    rel, decided = split.matrix(part), split.matrix(fitted, likes_only=False)
    users = np.flatnonzero(rel.getnnz(axis=1) > 0)
    tops = [top_k(scores_of(users[s:s + 512]), 10, decided[users[s:s + 512]])
            for s in range(0, users.size, 512)]
    return per_user_metrics(np.concatenate(tops), rel[users], [10])["ndcg@10"]


def ndcg(split: Split, part: str, scores_of) -> float:
    return float(ndcg_users(split, part, scores_of).mean())


def nopes(split: Split, part: str) -> sp.csr_matrix:
    df = getattr(split, part).filter(~pl.col("like"))
    return sp.csr_matrix((np.ones(df.height, np.float32), (df["u"].to_numpy(), df["i"].to_numpy())),
                         shape=(split.n_users, split.n_items))


def ridge_zero_diag(x: sp.csr_matrix, y: sp.csr_matrix, lam: float | np.ndarray, own: np.ndarray,
                    gram: sp.spmatrix | None = None, cross: sp.spmatrix | None = None) -> np.ndarray:
    """argmin ||Y - X B||^2 + lam ||B||^2 with B[own[j], j] = 0 (input column own[j] is output
    j's own item; -1: none). lam may be one ridge per input column. gram/cross replace X'X and
    X'Y (a weighted mix of two problems)."""
    g = (x.T @ x if gram is None else gram).toarray().astype(np.float32)
    g[np.diag_indices_from(g)] += lam
    p = spd_inverse(g)
    b = p @ (x.T @ y if cross is None else cross).toarray().astype(np.float32)
    cols = np.flatnonzero(own >= 0)
    rows = own[cols]
    b[:, cols] -= p[:, rows] * (b[rows, cols] / p[rows, rows])[None, :]
    b[rows, cols] = 0.0
    return b


def linear_scorer(x_rows: sp.csr_matrix, inputs: np.ndarray, outputs: np.ndarray, b: np.ndarray, n: int):
    def scores(users: np.ndarray) -> np.ndarray:
        out = np.zeros((len(users), n), np.float32)
        out[:, outputs] = x_rows[users][:, inputs] @ b
        return out
    return scores


# ------------------------------------------------------------------ the families

def fit_ease(split: Split, part: str, lam: float):
    x = split.matrix(part)
    a, b = EASERec.weights(x, lam)
    return lambda users: EASERec.apply(x[users], a, b, split.n_items)


def fit_nopes_input(split: Split, part: str, lam: float, alpha: float):
    likes, no = split.matrix(part), nopes(split, part)
    n = split.n_items
    z = sp.hstack([likes, alpha * no]).tocsr()
    z.eliminate_zeros()  # alpha 0: EASE itself
    inputs = np.flatnonzero(z.getnnz(axis=0) > 0)
    outputs = np.flatnonzero(likes.getnnz(axis=0) > 0)
    own = np.searchsorted(inputs, outputs)  # the like column of each output (always an input)
    b = ridge_zero_diag(z[:, inputs], likes[:, outputs], lam, own)  # z: likes 0..n-1, nopes n..2n-1
    return linear_scorer(z, inputs, outputs, b, n)


def fit_nopes_target(split: Split, part: str, lam: float, gamma: float):
    likes, no = split.matrix(part), nopes(split, part)
    items = np.flatnonzero(likes.getnnz(axis=0) > 0)
    xa = likes[:, items]
    b = ridge_zero_diag(xa, (likes - gamma * no).tocsr()[:, items], lam, np.arange(items.size))
    return linear_scorer(likes, items, items, b, split.n_items)


def fit_transitions(split: Split, part: str, lam: float, alpha: float,
                    cuts: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)):
    likes = split.matrix(part)
    items = np.flatnonzero(likes.getnnz(axis=0) > 0)
    d = getattr(split, part).sort("u", "o").with_columns(pos=pl.int_range(pl.len()).over("u"),
                                                         n=pl.len().over("u"))
    pre, post = [], []
    for c in cuts:  # (earlier likes -> later likes) pairs, one per user and cut
        cut = (pl.col("n") * c).floor()
        for rows, keep in ((pre, pl.col("pos") < cut), (post, pl.col("pos") >= cut)):
            df = d.filter(keep & pl.col("like"))
            rows.append(sp.csr_matrix((np.ones(df.height, np.float32), (df["u"].to_numpy(), df["i"].to_numpy())),
                                      shape=likes.shape)[:, items])
    s, t = sp.vstack(pre).tocsr(), sp.vstack(post).tocsr()
    xa = likes[:, items]
    gram = alpha * (xa.T @ xa) + (1 - alpha) * (s.T @ s)
    cross = alpha * (xa.T @ xa) + (1 - alpha) * (s.T @ t)
    b = ridge_zero_diag(xa, xa, lam, np.arange(items.size), gram, cross)
    return linear_scorer(likes, items, items, b, split.n_items)


def fit_edlae(split: Split, part: str, lam: float, p: float, zero_diag: bool):
    """Emphasised denoising (Steck 2020): the ridge on item j grows with its count, as dropout
    with rate p would make it; zero_diag False is the plain DLAE, B = (G + L)^-1 G."""
    x = split.matrix(part)
    items = np.flatnonzero(x.getnnz(axis=0) > 0)
    counts = x.getnnz(axis=0)[items]  # the Gram matrix's diagonal (likes are 0/1)
    own = np.arange(items.size) if zero_diag else np.full(items.size, -1)
    b = ridge_zero_diag(x[:, items], x[:, items], lam + p / (1 - p) * counts, own)
    return linear_scorer(x, items, items, b, split.n_items)


def fit_rp3(split: Split, part: str, lam: float, beta: float, c: float):
    """EASE + c * RP3beta, the walk matrix scaled to EASE's Frobenius norm."""
    x = split.matrix(part)
    items, ease = EASERec.weights(x, lam)
    xa = x[:, items]
    du, di = np.asarray(xa.sum(1)).ravel(), np.asarray(xa.sum(0)).ravel()
    walk = ((sp.diags(1 / di) @ xa.T) @ (sp.diags(1 / np.maximum(du, 1)) @ xa)).toarray()
    walk /= di[None, :] ** beta
    np.fill_diagonal(walk, 0.0)
    b = ease + c * (np.linalg.norm(ease) / np.linalg.norm(walk)) * walk.astype(np.float32)
    return linear_scorer(x, items, items, b, split.n_items)


def fit_popularity_cols(split: Split, part: str, lam: float, g: float):
    x = split.matrix(part)
    items, ease = EASERec.weights(x, lam)
    pop = np.asarray(x[:, items].sum(0)).ravel()
    return linear_scorer(x, items, items, ease * (pop ** -g)[None, :].astype(np.float32), split.n_items)


def side_info_fitter(frames: Frames, catalog: Catalog):
    """fit(split, part, lam, a, b) for the side_info family (tags as of the part's last decision)."""
    index = {v: k for k, v in enumerate(catalog.item_ids)}
    n = catalog.n_items
    released = frames.videos.select(pl.col("id").replace_strict(index, return_dtype=pl.Int64).alias("i"),
                                    (pl.col("product_released_at").dt.year() // 5).alias("period")).drop_nulls()
    periods = released["period"].rank("dense").cast(pl.Int64).to_numpy() - 1
    by_period = sp.csr_matrix((np.ones(periods.size, np.float32), (periods, released["i"].to_numpy())),
                              shape=(int(periods.max()) + 1, n))

    def tags(part_split: Split, part: str) -> sp.csr_matrix:
        t = (frames.as_of(part_split.feature_time(part)).tags.unique(["video_id", "tag_name"])
             .filter(pl.len().over("tag_name") >= 3))
        rows = t["tag_name"].rank("dense").cast(pl.Int64).to_numpy() - 1
        cols = t["video_id"].replace_strict(index, return_dtype=pl.Int64).to_numpy()
        return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(int(rows.max()) + 1, n))

    def fit(split: Split, part: str, lam: float, a: float, b: float, rank: int = 0):
        """rank > 0: B's exact truncated SVD of that rank, as a two-tower serves it (W = U S^.5,
        V = V S^.5, the user vector a sum of W rows)."""
        likes = split.matrix(part)
        items = np.flatnonzero(likes.getnnz(axis=0) > 0)
        x = sp.vstack([likes, a * tags(split, part), b * by_period]).tocsr()[:, items]
        b_ = ridge_zero_diag(x, x, lam, np.arange(items.size))
        if rank:
            u, sv, vt = scipy.linalg.svd(b_, full_matrices=False, lapack_driver="gesdd")
            b_ = (u[:, :rank] * sv[:rank]) @ vt[:rank]
        return linear_scorer(likes, items, items, b_, n)
    return fit


def fit_recent_popularity(split: Split, part: str, lam: float, days: int, beta: float):
    """EASE + beta log(1 + the video's likes in the `days` days before the user's last decision
    in `part`), counted over `part`'s likes of every user, whole days before that day only."""
    ease = fit_ease(split, part, lam)
    d = getattr(split, part)
    likes = d.filter(pl.col("like"))
    day = (likes["ts"].dt.epoch("d")).to_numpy()
    first = int(day.min())
    n_days = int(day.max()) - first + 2
    per_day = sp.csr_matrix((np.ones(day.size, np.float32), (day - first, likes["i"].to_numpy())),
                            shape=(n_days, split.n_items)).toarray()
    cum = np.vstack([np.zeros((1, split.n_items), np.float32), per_day.cumsum(0)])  # likes before day t
    last = d.group_by("u").agg(pl.col("ts").max().dt.epoch("d"))
    until = np.zeros(split.n_users, np.int64)
    until[last["u"].to_numpy()] = np.clip(last["ts"].to_numpy() - first, 0, n_days)

    def scores(users: np.ndarray) -> np.ndarray:
        hi = until[users]
        recent = cum[hi] - cum[np.maximum(hi - days, 0)]
        return ease(users) + beta * np.log1p(recent)
    return scores


def dae_trajectory(split: Split, part: str, seed: int, epochs: int, hidden: int = 600,
                   dropout: float = 0.5):
    """Train a Mult-DAE on `part`'s likes; yield (epoch, scores function) after every epoch."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x = split.matrix(part)
    items = np.flatnonzero(x.getnnz(axis=0) > 0)
    dense = torch.from_numpy(x[:, items].toarray())
    users = np.flatnonzero(x.getnnz(axis=1) > 0)
    enc, dec = torch.nn.Linear(items.size, hidden), torch.nn.Linear(hidden, items.size)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
    rng = np.random.default_rng(seed)

    def forward(xb, train: bool):
        return dec(torch.tanh(enc(F.dropout(F.normalize(xb, dim=1), dropout, train))))

    def scores(us: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = np.zeros((len(us), split.n_items), np.float32)
            out[:, items] = forward(dense[us], False).numpy()
        return out

    for epoch in range(1, epochs + 1):
        order = rng.permutation(users)
        for s in range(0, order.size, 64):
            xb = dense[order[s:s + 64]]
            loss = -(F.log_softmax(forward(xb, True), 1) * xb).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        yield epoch, scores


# ------------------------------------------------------------------ choose on val, score on test

def grid_family(split: Split, fit, grid: list[tuple]) -> dict:
    """Choose on val, refit on train; the oracle is the best test score over the grid."""
    val = {g: ndcg(split, "val", fit(split, "fit", *g)) for g in grid}
    per_user = {g: ndcg_users(split, "test", fit(split, "train", *g)) for g in grid}
    test = {g: float(v.mean()) for g, v in per_user.items()}
    chosen = max(grid, key=lambda g: val[g])
    best = max(grid, key=lambda g: test[g])
    return {"chosen": list(chosen), "val": val[chosen], "test": test[chosen],
            "oracle": list(best), "oracle_test": test[best],
            "grid": [{"params": list(g), "val": val[g], "test": test[g]} for g in grid],
            "per_user": per_user[chosen]}  # popped before writing: for the paired intervals


def interval(a: np.ndarray, b: np.ndarray) -> dict:
    c = paired_ratio_ci(a, b)
    return {"ratio": round(c.ratio, 4), "ci95": [round(c.low, 4), round(c.high, 4)],
            "text": f"{c.ratio:.3f} ({c.low:.3f}-{c.high:.3f})"}


def frozen(users: np.ndarray, scores: np.ndarray):
    """A scores function over a fixed matrix of rows, one per user in `users` (a DAE's scores
    taken at one epoch, before training moves on)."""
    at = {int(u): k for k, u in enumerate(users)}
    return lambda us: scores[[at[int(u)] for u in us]]


def part_users(split: Split, part: str) -> np.ndarray:
    return np.flatnonzero(split.matrix(part).getnnz(axis=1) > 0)


def dae_family(split: Split, lam: float, seeds=(0, 1, 2), epochs: int = 40, first: int = 15,
               weights=(0.0, 0.05, 0.1, 0.2)) -> dict:
    """Each seed alone (its own epoch and c on val), and the seeds' average (one epoch and c)."""
    ease_fit, ease_train = fit_ease(split, "fit", lam), fit_ease(split, "train", lam)
    vu, tu = part_users(split, "val"), part_users(split, "test")
    val_ease = frozen(vu, ease_fit(vu))
    per_epoch: dict[int, list[np.ndarray]] = {}  # epoch -> each seed's val scores
    chosen = []
    for seed in seeds:
        best = (-1.0, 0, 0.0)
        for epoch, dae in dae_trajectory(split, "fit", seed, epochs):
            if epoch < first:
                continue
            d = dae(vu)
            per_epoch.setdefault(epoch, []).append(d)
            for c in weights:
                v = ndcg(split, "val", lambda u, c=c, d=d: val_ease(u) + c * frozen(vu, d)(u))
                best = max(best, (v, epoch, c))
        chosen.append(best)
    avg_best = max((ndcg(split, "val", lambda u, c=c, m=np.mean(ds, 0): val_ease(u) + c * frozen(vu, m)(u)), e, c)
                   for e, ds in per_epoch.items() for c in weights)
    per_epoch.clear()
    test_ease = frozen(tu, ease_train(tu))
    runs, averaged = [], []
    for seed, (v, epoch, c) in zip(seeds, chosen, strict=True):
        for e, dae in dae_trajectory(split, "train", seed, max(epoch, avg_best[1])):
            if e == epoch:
                d = dae(tu)
                seed_users = ndcg_users(split, "test", lambda u, c=c, d=d: test_ease(u) + c * frozen(tu, d)(u))
                test = float(seed_users.mean())
            if e == avg_best[1]:
                averaged.append(dae(tu))
        runs.append({"seed": seed, "epoch": epoch, "weight": c, "val": v, "test": test, "per_user": seed_users})
        print(f"  dae seed {seed}: epoch {epoch}, weight {c}, val {v:.4f}, test {test:.4f}", flush=True)
    v, epoch, c = avg_best
    mean = np.mean(averaged, 0)
    avg_users = ndcg_users(split, "test", lambda u: test_ease(u) + c * frozen(tu, mean)(u))
    avg_test = float(avg_users.mean())
    print(f"  dae average of {len(seeds)}: epoch {epoch}, weight {c}, val {v:.4f}, test {avg_test:.4f}", flush=True)
    tests = [r["test"] for r in runs]
    return {"runs": runs, "test": float(np.mean(tests)), "test_min": min(tests), "test_max": max(tests),
            "average": {"epoch": epoch, "weight": c, "val": v, "test": avg_test, "per_user": avg_users}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help=f"comma-separated families: ease,{','.join(FAMILIES)}")
    ap.add_argument("--data", default=str(MOVIELENS))
    a = ap.parse_args()
    families = a.only.split(",") if a.only else list(FAMILIES)
    t0 = time.perf_counter()
    s, frames = import_movielens("past-ease", a.data)
    shutil.rmtree(s.home, ignore_errors=True)
    cfg = load_config()
    catalog = Catalog.from_frames(frames)
    split = make_split(catalog, "temporal-user", 0.2, cfg.training.train_val_split,
                       cfg.training.seed)
    ease = grid_family(split, fit_ease, [(lam,) for lam in LAMBDAS])
    lam = ease["chosen"][0]
    out: dict = {"ease": ease}
    print(f"ease: lambda {lam} test {ease['test']:.4f} (oracle {ease['oracle_test']:.4f} at {ease['oracle']})",
          flush=True)
    # Each grid holds the neutral value (EASE itself: alpha 0, gamma 0, mix 1), so validation
    # may also say "do not use it".
    grids = {"nopes_input": (fit_nopes_input, [(lam, x) for x in (0.0, 0.1, 0.25, 0.5)]),
             "nopes_target": (fit_nopes_target, [(lam, x) for x in (0.0, 0.25, 0.5, 1.0)]),
             "transitions": (fit_transitions, [(lam, x) for x in (0.5, 0.7, 0.9, 1.0)]),
             "edlae": (fit_edlae, [(x, p, z) for x in (lam / 2, lam) for p in (0.0, 0.1, 0.25) for z in (True, False)]),
             "rp3": (fit_rp3, [(lam, b, c) for b in (0.5, 0.7) for c in (0.0, 0.25, 0.5)]),
             "popularity_cols": (fit_popularity_cols, [(lam, g) for g in (-0.1, 0.0, 0.1, 0.2)]),
             "side_info": (side_info_fitter(frames, catalog), [(lam, a, b) for a in (0.0, 1.0, 3.0) for b in (0.0, 1.0)]),
             "recent_popularity": (fit_recent_popularity,
                                   [(lam, d, b) for d in (7, 30, 365) for b in (0.0, 0.01, 0.02)])}
    for name, (fit, grid) in grids.items():
        if name in families:
            out[name] = grid_family(split, fit, grid)
            r = out[name]
            print(f"{name}: chosen {r['chosen']} test {r['test']:.4f} = {r['test'] / ease['test']:.3f}x EASE "
                  f"(oracle {r['oracle_test']:.4f} at {r['oracle']})", flush=True)
    if "side_info" in families:  # as served: the two-tower keeps a rank-D truncation of B
        rank = load_config(ROOT / "config" / "best.yaml").model.embedding_dim
        fit = grids["side_info"][0]
        chosen = out["side_info"]["chosen"]
        e_users = ndcg_users(split, "test", fit(split, "train", lam, 0.0, 0.0, rank))
        c_users = ndcg_users(split, "test", fit(split, "train", *chosen, rank))
        out["side_info"]["served"] = served = {
            "rank": rank, "ease": float(e_users.mean()), "chosen": float(c_users.mean()),
            "ease_vs_full": interval(e_users, ease["per_user"]),
            "chosen_vs_full": interval(c_users, ease["per_user"])}
        print(f"side_info at rank {rank} (as served): EASE's B {served['ease']:.4f} "
              f"({served['ease_vs_full']['text']} full EASE), the chosen {served['chosen']:.4f} "
              f"({served['chosen_vs_full']['text']})", flush=True)
    if "dae" in families:
        out["dae"] = dae_family(split, lam)
        r = out["dae"]
        print(f"dae: test mean {r['test']:.4f} = {r['test'] / ease['test']:.3f}x EASE "
              f"(seeds {r['test_min']:.4f}..{r['test_max']:.4f}); their average "
              f"{r['average']['test'] / ease['test']:.3f}x", flush=True)
    # x EASE with a 95% paired bootstrap interval over the test users: what this split can tell apart
    base = ease["per_user"]
    for name, r in out.items():
        if name == "dae":
            for run in r["runs"]:
                run["vs_ease"] = interval(run.pop("per_user"), base)
            r["average"]["vs_ease"] = interval(r["average"].pop("per_user"), base)
        elif name != "ease":
            r["vs_ease"] = interval(r.pop("per_user"), base)
    ease.pop("per_user")
    out["_meta"] = {"split": split.describe(), "machine": machine(), "commit": git_commit(),
                    "wall_seconds": round(time.perf_counter() - t0, 1)}
    print("\n| family | chosen on val | test NDCG@10 | x EASE (95% CI) | oracle over the grid |")
    print("|---|---|---|---|---|")
    for name, r in out.items():
        if name == "_meta":
            continue
        if name == "dae":
            print(f"| dae (3 seeds) | per seed | {r['test']:.4f} ({r['test_min']:.4f}-{r['test_max']:.4f}) | "
                  f"{r['test'] / ease['test']:.3f} (seeds: "
                  + ", ".join(x["vs_ease"]["text"] for x in r["runs"]) + ") | - |")
            m = r["average"]
            print(f"| dae (average of the 3) | epoch {m['epoch']}, c {m['weight']} | {m['test']:.4f} | "
                  f"{m['vs_ease']['text']} | - |")
        else:
            ci = r["vs_ease"]["text"] if "vs_ease" in r else "1.000"
            print(f"| {name} | {r['chosen']} | {r['test']:.4f} | {ci} | "
                  f"{r['oracle_test']:.4f} at {r['oracle']} |")
    print(f"\nwall time {out['_meta']['wall_seconds']} s")
    write_json("past_ease", out)


if __name__ == "__main__":
    main()
