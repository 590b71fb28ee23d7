"""Training: examples from decisions, negative sampling, losses, AdamW, clipping, early
stopping, atomic checkpoints and resume. Read top to bottom: prepare -> init -> epochs.

Batches are built by tensor indexing into pre-built feature matrices (no per-sample Python).
The `hybrid` family starts from a closed form (the truncated SVD of EASE's item-item matrix, or
of the like matrix itself for very large catalogues) and its content MLP learns to map a video's
features to its collaborative vector, so videos with no decision yet land in the same space.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from twotower.config import Config
from twotower.data.load import Frames
from twotower.errors import InvalidInput, ModelFitError, NotFound
from twotower.evaluate.baselines import Context, EASERec
from twotower.evaluate.splits import Catalog, Split
from twotower.features import FeaturePipeline
from twotower.metrics import auc_per_user, ranking_metrics, top_k
from twotower.model import ModelArgs, TwoTower

console = Console(stderr=True)
DENSE_LIMIT = 200_000_000  # floats; above this feature rows are densified per batch


# --------------------------------------------------------------------------- feature tensors

class Rows:
    """Row access to a feature matrix: dense torch tensor when it fits, else CSR per batch."""

    def __init__(self, m: sp.csr_matrix) -> None:
        self.shape = m.shape
        self.dense = torch.from_numpy(m.toarray()) if m.shape[0] * m.shape[1] <= DENSE_LIMIT else None
        self.csr = None if self.dense is not None else m.tocsr()

    def __getitem__(self, idx: np.ndarray | torch.Tensor) -> torch.Tensor:
        if self.dense is not None:
            return self.dense[torch.as_tensor(idx, dtype=torch.long)]
        return torch.from_numpy(self.csr[np.asarray(idx)].toarray())


def history_matrix(likes: pl.DataFrame, n_users: int, cat2model: np.ndarray, max_len: int) -> torch.Tensor:
    """(n_users, L) int64: model ids of each user's most recent likes, -1 padded."""
    d = likes.with_columns(m=pl.Series(cat2model[likes["i"].to_numpy()])).filter(pl.col("m") >= 0)
    d = d.sort(["u", "ts", "i"], descending=[False, True, True]).with_columns(
        pos=pl.int_range(pl.len()).over("u")).filter(pl.col("pos") < max_len)
    L = max(1, int(d["pos"].max() + 1) if d.height else 1)
    h = torch.full((n_users, L), -1, dtype=torch.long)
    h[torch.from_numpy(d["u"].to_numpy().astype(np.int64)), torch.from_numpy(d["pos"].to_numpy().astype(np.int64))] = \
        torch.from_numpy(d["m"].to_numpy().astype(np.int64))
    return h


@dataclass
class Prepared:
    """Everything a training run reads, in index space."""

    catalog: Catalog
    split: Split
    pipeline: FeaturePipeline
    user_x: Rows
    item_x: Rows
    history: torch.Tensor  # (n_users, L)
    cat2model: np.ndarray  # catalog item -> model id, -1 for cold
    item_vocab: list[str]  # model id -> video id
    pop: np.ndarray  # like counts in the training part, per catalog item
    decided: np.ndarray  # sorted keys u * n_items + i of decisions in the training part


def prepare(cfg: Config, frames: Frames, catalog: Catalog, split: Split, part: str = "fit") -> Prepared:
    """Fit the feature pipeline on the `part` window and build the feature matrices."""
    d = getattr(split, part)
    frames = frames.as_of(split.feature_time(part))
    a = cfg.artifacts
    pipe = FeaturePipeline.fit(frames.videos, frames.tags, frames.performers, frames.profiles,
                               _as_decisions(d), max_tag_vocab=a.max_tag_vocab,
                               min_tag_freq=a.min_tag_freq, max_actress_vocab=a.max_actress_vocab,
                               min_actress_freq=a.min_actress_freq, max_history=a.max_history)
    liked = np.flatnonzero(np.bincount(d.filter(pl.col("like"))["i"].to_numpy(), minlength=catalog.n_items))
    return build(pipe, [str(x) for x in catalog.item_ids[liked]], frames, catalog, split, part)


def _as_decisions(d: pl.DataFrame) -> pl.DataFrame:
    return d.select("user_id", "video_id", pl.when(pl.col("like")).then(pl.lit("like"))
                    .otherwise(pl.lit("nope")).alias("decision_type"), pl.col("ts").alias("created_at"))


def build(pipe: FeaturePipeline, item_vocab: list[str], frames: Frames, catalog: Catalog,
          split: Split, part: str) -> Prepared:
    """Feature matrices and histories of every user/video, from the decisions of `part`, with a
    fitted pipeline and the model's item-ID vocabulary (videos outside it are cold)."""
    d = getattr(split, part)
    as_of = pl.select(d["ts"].max() + pl.duration(microseconds=1)).item() if d.height else None
    frames = frames.as_of(split.feature_time(part))  # item features: only what existed then
    decisions = _as_decisions(d)
    user_x = pipe.user_matrix(catalog.user_ids, frames.profiles, decisions, frames.videos, frames.tags,
                              frames.performers, as_of=as_of)
    item_x = pipe.item_matrix(catalog.item_ids, frames.videos, frames.tags, frames.performers)
    likes = d.filter(pl.col("like"))
    pop = np.bincount(likes["i"].to_numpy(), minlength=catalog.n_items).astype(np.float64)
    vocab = pl.DataFrame({"video_id": item_vocab, "m": np.arange(len(item_vocab), dtype=np.int64)})
    cat = pl.DataFrame({"video_id": catalog.item_ids, "i": np.arange(catalog.n_items)})
    j = cat.join(vocab, on="video_id", how="left").sort("i")
    cat2model = j["m"].fill_null(-1).to_numpy().astype(np.int64)
    decided = np.sort(d["u"].to_numpy().astype(np.int64) * catalog.n_items + d["i"].to_numpy())
    return Prepared(catalog, split, pipe, Rows(user_x), Rows(item_x),
                    history_matrix(likes, catalog.n_users, cat2model, pipe.max_history),
                    cat2model, list(item_vocab), pop, decided)


def model_args(cfg: Config, p: Prepared) -> ModelArgs:
    m = cfg.model
    return ModelArgs(kind=m.kind, user_dim=p.pipeline.user_feature_dim, item_dim=p.pipeline.item_feature_dim,
                     n_items=len(p.item_vocab), embedding_dim=m.embedding_dim, hidden_dims=list(m.hidden_dims),
                     dropout=list(m.dropout), normalize=m.normalize, use_content=m.use_content,
                     user_content=m.user_content)


# --------------------------------------------------------------------------- encoding

@torch.no_grad()
def encode_items(model: TwoTower, p: Prepared, batch: int = 8192) -> torch.Tensor:
    model.eval()
    out = []
    for s in range(0, p.catalog.n_items, batch):
        idx = np.arange(s, min(s + batch, p.catalog.n_items))
        out.append(model.item(p.item_x[idx], torch.from_numpy(p.cat2model[idx])))
    return torch.cat(out)  # (n_items, D)


@torch.no_grad()
def encode_users(model: TwoTower, p: Prepared, users: np.ndarray, batch: int = 8192) -> torch.Tensor:
    model.eval()
    out = [model.user(p.user_x[users[s:s + batch]], p.history[torch.from_numpy(users[s:s + batch])])
           for s in range(0, len(users), batch)]
    return torch.cat(out) if out else torch.zeros((0, model.args.embedding_dim))


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


# --------------------------------------------------------------------------- losses

def bce_loss(scores: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Seed 003: BCEWithLogits on the dot product (like = 1, nope and sampled negatives = 0)."""
    return F.binary_cross_entropy_with_logits(scores / temperature, labels)


def margin_loss(pos: torch.Tensor, neg: torch.Tensor, margin: float) -> torch.Tensor:
    """Seed 000 contrastive loss: mean(max(0, margin - s(u, pos) + s(u, neg)))."""
    return torch.clamp(margin - pos + neg, min=0.0).mean()


def softmax_loss(u: torch.Tensor, v: torch.Tensor, item_ids: torch.Tensor, temperature: float,
                 log_q: torch.Tensor | None = None) -> torch.Tensor:
    """In-batch sampled softmax: each user's positive against the other positives of the batch,
    logQ-corrected for how often popular videos appear as negatives (Yi et al. 2019), with
    accidental hits (the same video elsewhere in the batch) removed."""
    logits = u @ v.T / temperature  # (B, B)
    if log_q is not None:
        logits = logits - log_q[None, :]
    same = item_ids[None, :] == item_ids[:, None]
    eye = torch.eye(len(item_ids), dtype=torch.bool)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(item_ids)))


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


def distill_content(model: TwoTower, p: Prepared, cfg: Config, log: list[dict]) -> dict[str, float]:
    """Teach the item content MLP to reproduce the ID vectors of known videos, so a video with no
    decision yet gets a vector in the same space. MSE, early stopping on held-out videos."""
    if model.item.content is None:
        return {}
    t = cfg.training
    ids = np.flatnonzero(p.cat2model >= 0)
    rng = np.random.default_rng(t.seed)
    perm = rng.permutation(ids)
    n_val = max(1, int(0.1 * perm.size))
    val, tr = perm[:n_val], perm[n_val:]
    target = model.item.ids.weight.detach()
    for prm in model.parameters():
        prm.requires_grad_(False)
    for prm in model.item.content.parameters():
        prm.requires_grad_(True)
    opt = torch.optim.AdamW(model.item.content.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    best, best_state, bad = math.inf, None, 0

    def loss_on(idx: np.ndarray) -> torch.Tensor:
        pred = model.item.content(p.item_x[idx])
        return F.mse_loss(pred, target[torch.from_numpy(p.cat2model[idx])])

    for epoch in range(t.distill_epochs):
        model.train()
        tr = rng.permutation(tr)
        for s in range(0, tr.size, t.batch_size):
            loss = loss_on(tr[s:s + t.batch_size])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.item.content.parameters(), t.gradient_clip_norm)
            opt.step()
        model.eval()
        with torch.no_grad():
            vl = float(loss_on(val))
        log.append({"stage": "distill", "epoch": epoch, "val_mse": vl})
        if vl < best - t.min_delta * abs(best if math.isfinite(best) else 1):
            best, bad = vl, 0
            best_state = {k: v.clone() for k, v in model.item.content.state_dict().items()}
        else:
            bad += 1
            if bad >= t.early_stopping_patience:
                break
    if best_state is not None:
        model.item.content.load_state_dict(best_state)
    for prm in model.parameters():
        prm.requires_grad_(True)
    return {"distill_val_mse": best}


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


# --------------------------------------------------------------------------- the loop

@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict[str, float]
    history: list[dict] = field(default_factory=list)
    epochs_run: int = 0
    seconds: float = 0.0


def _better(metric: str, new: float, best: float, min_delta: float) -> bool:
    if metric == "val_loss":
        return new < best - min_delta
    return new > best + min_delta


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write-then-rename: a crash never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def model_from_state(state: dict[str, Any]) -> TwoTower:
    """The model a checkpoint describes, weights loaded, in eval mode."""
    model = TwoTower(ModelArgs(**state["model_args"]))
    model.load_state_dict(state["model_state"])
    return model.eval()


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise NotFound(f"checkpoint {path} does not exist: train one with `twotower train`")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or not a checkpoint
        raise InvalidInput(f"{path} is not a readable twotower checkpoint: {e}") from e


def train(cfg: Config, frames: Frames, catalog: Catalog, split: Split, out_dir: Path,
          resume: bool = False, quiet: bool = False, final_refit: bool = True) -> TrainResult:
    """Train one model on split.fit with early stopping on split.val; best.pt and last.pt
    (for --resume) go to out_dir, with the config used. A closed-form hybrid (epochs 0) is
    fitted on all of train unless final_refit is False (then on fit, so val stays unseen)."""
    metric = cfg.training.early_stopping_metric
    if metric not in ("val_loss", "ndcg@10"):
        raise InvalidInput("training.early_stopping_metric must be val_loss or ndcg@10")
    t = cfg.training
    from threadpoolctl import threadpool_limits

    threads = t.threads or physical_cores()
    torch.set_num_threads(threads)
    with threadpool_limits(threads):  # numpy/scipy's BLAS (the closed forms) as well
        return _train(cfg, frames, catalog, split, out_dir, resume, quiet, final_refit, threads)


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads share a core's FPU: more threads than
    cores only slows training down)."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cores, core = set(), {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            core[k.strip()] = v.strip()
            if not line.strip():
                cores.add((core.get("physical id"), core.get("core id")))
                core = {}
        cores.add((core.get("physical id"), core.get("core id")))
        n = len(cores - {(None, None)})
    except OSError:
        n = 0
    return max(1, min(allowed, n or allowed))


def _train(cfg: Config, frames: Frames, catalog: Catalog, split: Split, out_dir: Path, resume: bool,
           quiet: bool, final_refit: bool, threads: int) -> TrainResult:
    t, metric = cfg.training, cfg.training.early_stopping_metric
    t0 = time.perf_counter()
    torch.manual_seed(t.seed)
    np.random.seed(t.seed)
    closed_form_full = cfg.model.kind == "hybrid" and t.epochs == 0 and final_refit
    closed_form = cfg.model.kind == "hybrid" and t.epochs == 0
    p = prepare(cfg, frames, catalog, split, "train" if closed_form_full else "fit")
    if not len(p.item_vocab) and cfg.model.kind == "hybrid":
        raise ModelFitError("no likes in the training window: nothing to learn from")
    model = TwoTower(model_args(cfg, p))
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    history: list[dict] = []
    info: dict[str, Any] = {"threads": threads}
    twin_metrics: dict[str, float] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    start_epoch, best, bad = 0, (math.inf if metric == "val_loss" else -math.inf), 0
    last = out_dir / "last.pt"
    if resume:
        st = load_checkpoint(last)
        if st.get("config_digest") != cfg.digest():
            raise InvalidInput(f"{last} was trained with another configuration: resume needs the same one")
        model.load_state_dict(st["model_state"])
        opt.load_state_dict(st["optimizer_state"])
        start_epoch, best, bad = st["epoch"] + 1, st["best_metric"], st["bad_epochs"]
        history, info = st["history"], st["info"]
    elif cfg.model.kind == "hybrid" and cfg.model.init != "random":
        lam = None
        if closed_form_full and split.val.height:
            # The final closed form is fitted on all of train, val included, so its own score
            # on val means nothing (those rows are excluded from ranking: NDCG 0). The score
            # stored is a twin's, fitted the same way on `fit` alone and scored on val.
            p_fit = prepare(cfg, frames, catalog, split, "fit")
            twin = TwoTower(model_args(cfg, p_fit))
            lam = init_hybrid(twin, p_fit, cfg, "fit", split).get("ease_lambda")
            distill_content(twin, p_fit, cfg, [])
            twin_metrics = validate(twin, p_fit, cfg)
            info["validated_on"] = "a twin fitted on the fit part, scored on val (the model itself saw val)"
        info |= init_hybrid(model, p, cfg, "train" if closed_form_full else "fit", split, lam)
        info |= distill_content(model, p, cfg, history)

    def checkpoint_state(epoch: int, metrics: dict) -> dict[str, Any]:
        return {"model_state": model.state_dict(), "model_args": model.args.to_dict(),
                "pipeline": p.pipeline.to_dict(), "config": cfg.to_dict(), "config_digest": cfg.digest(),
                "item_vocab": p.item_vocab, "metrics": metrics, "split": split.name,
                "data_window": [str(getattr(split, "train" if closed_form_full else "fit")["ts"].min()),
                                str(getattr(split, "train" if closed_form_full else "fit")["ts"].max())],
                "epoch": epoch, "optimizer_state": opt.state_dict(), "best_metric": best,
                "bad_epochs": bad, "history": history, "info": info,
                "created_at": datetime.now().astimezone().isoformat()}

    if closed_form or (cfg.model.kind == "hybrid" and start_epoch >= t.epochs):
        m = twin_metrics if "validated_on" in info else validate(model, p, cfg)
        save_checkpoint(out_dir / "best.pt", checkpoint_state(0, m))
        save_checkpoint(last, checkpoint_state(0, m))
        return TrainResult(out_dir / "best.pt", m, history, 0, time.perf_counter() - t0)

    if not any(h.get("stage") == "start" for h in history):  # the starting point, before epoch 0
        history.append({"stage": "start", "epoch": -1, **validate(model, p, cfg)})
    sampler = NegativeSampler(p, t.sampler_mix)
    fit = p.split.fit
    fu, fi, fy = fit["u"].to_numpy(), fit["i"].to_numpy(), fit["like"].to_numpy()
    log_q = torch.from_numpy(np.log((p.pop + 1.0) / (p.pop + 1.0).sum())).float()
    best_metrics: dict[str, float] = {}
    progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} batches"),
                        TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                        console=console, disable=quiet, transient=True)
    with progress:
        for epoch in range(start_epoch, t.epochs):
            rng = np.random.default_rng([t.seed, epoch])
            torch.manual_seed(t.seed * 1000 + epoch)
            e0 = time.perf_counter()
            sampler.refresh(model)
            users, items, labels, n_pos, bsz = _epoch_examples(fu, fi, fy, sampler, rng, t, model)
            n_batches = math.ceil(len(users) / bsz)
            task = progress.add_task("train", total=n_batches, epoch=epoch, loss=float("nan"))
            model.train()
            fb_time, total = 0.0, 0.0
            for b in range(n_batches):
                sl = slice(b * bsz, (b + 1) * bsz)
                ub, ib, yb = users[sl], items[sl], labels[sl]
                uf, hist = p.user_x[ub], p.history[torch.from_numpy(ub)]
                itf, iidx = p.item_x[ib], torch.from_numpy(p.cat2model[ib])
                f0 = time.perf_counter()
                hist = torch.where(hist == iidx[:, None], torch.full_like(hist, -1), hist)  # no self-leak
                u, v = model.user(uf, hist), model.item(itf, iidx)
                if t.loss == "bce":
                    loss = bce_loss(model.score(u, v), torch.from_numpy(yb))
                elif t.loss == "margin":
                    r = t.negative_sampling_ratio  # examples come as [pos, neg * r] groups
                    s = model.score(u, v).view(-1, r + 1)
                    loss = margin_loss(s[:, :1], s[:, 1:], t.margin)
                else:
                    loss = softmax_loss(u, v, torch.from_numpy(ib), t.temperature,
                                        log_q[torch.from_numpy(ib)] if t.logq_correction else None)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.gradient_clip_norm)
                opt.step()
                fb_time += time.perf_counter() - f0
                if not torch.isfinite(loss):
                    raise ModelFitError(f"training diverged at epoch {epoch} (loss {float(loss)}): "
                                        "lower training.lr or raise training.gradient_clip_norm")
                total += loss.item()
                progress.update(task, advance=1, loss=total / (b + 1))
            progress.remove_task(task)
            epoch_s = time.perf_counter() - e0
            m = validate(model, p, cfg)
            row = {"epoch": epoch, "loss": total / max(n_batches, 1), **m, "seconds": epoch_s,
                   "train_seconds": fb_time, "positives_per_s": n_pos / epoch_s,
                   "prep_share": 1 - fb_time / epoch_s}
            history.append(row)
            if not quiet:
                console.print(f"epoch {epoch}: loss {row['loss']:.4f} "
                              + " ".join(f"{k} {v:.4f}" for k, v in m.items())
                              + f" | {row['positives_per_s']:,.0f} pos/s, data prep {row['prep_share']:.0%}")
            key = "val_loss" if metric == "val_loss" else "val_ndcg@10"
            cur = m.get(key, math.nan)
            if math.isfinite(cur) and _better(metric, cur, best, t.min_delta):
                best, bad, best_metrics = cur, 0, m
                save_checkpoint(out_dir / "best.pt", checkpoint_state(epoch, m))
            else:
                bad += 1
            save_checkpoint(last, checkpoint_state(epoch, m))
            if bad >= t.early_stopping_patience:
                if not quiet:
                    console.print(f"early stop: no {key} improvement for {bad} epochs")
                break
    if not (out_dir / "best.pt").exists():
        save_checkpoint(out_dir / "best.pt", checkpoint_state(t.epochs - 1, history[-1] if history else {}))
    epochs_run = sum(1 for h in history if "stage" not in h)  # not the starting point, not distillation
    return TrainResult(out_dir / "best.pt", best_metrics, history, epochs_run, time.perf_counter() - t0)


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
                     "history": r.history}
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
