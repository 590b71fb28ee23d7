"""Feature tensors for training: the fitted pipeline's matrices as indexable rows, like
histories, the model's item vocabulary, and the towers run over every user and video."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from rich.console import Console

from twotower.config import Config
from twotower.data.load import Frames
from twotower.evaluate.splits import Catalog, Split
from twotower.features import FeaturePipeline
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
    d = d.sort(["u", "o"], descending=[False, True]).with_columns(
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
                               min_actress_freq=a.min_actress_freq, max_history=a.max_history,
                               item_inputs=a.item_inputs, max_genre_vocab=a.max_genre_vocab,
                               max_maker_vocab=a.max_maker_vocab, min_maker_freq=a.min_maker_freq,
                               max_text_vocab=a.max_text_vocab, min_text_freq=a.min_text_freq)
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
                     user_content=m.user_content, content_ensemble=m.content_ensemble)


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
