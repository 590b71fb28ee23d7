"""Towers: tensors in, tensors out, ONNX-exportable. Losses live in train.py.

Two families share one interface, `UserTower(features, history)` and
`ItemTower(features, item_index)`, score = dot product:

- `mlp` (seed 003 §2): Linear(in,512)-ReLU-Dropout(.2)-Linear(512,256)-ReLU-Dropout(.1)-Linear(256,D),
  L2-normalised; content features only (history and item index are ignored).
- `hybrid`: the user vector is a linear function of the like-history bag (sum of learned rows,
  one per liked video) plus, optionally, an MLP of the user features; the item vector is an
  item-ID embedding for videos seen in training and an MLP of the content features for videos
  that have no ID yet (cold start), mapped into the same space. Inner product, not normalised:
  the vector norms carry popularity (docs/benchmarks.md explains why this wins).

History is an int64 (B, L) matrix of item indices padded with -1; item_index is -1 for a video
the model has never seen. Both map to a zero padding row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelArgs:
    kind: str
    user_dim: int
    item_dim: int
    n_items: int = 0  # items with an ID embedding (hybrid)
    embedding_dim: int = 256
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256])
    dropout: list[float] = field(default_factory=lambda: [0.2, 0.1])
    normalize: bool = True
    use_content: bool = True
    user_content: bool = True  # hybrid: the user tower's MLP of user features (off: linear in the history)
    content_ensemble: int = 1  # hybrid: item content MLPs averaged (each distilled from its own seed)

    def to_dict(self) -> dict:
        return asdict(self)


def mlp(in_dim: int, hidden: list[int], dropout: list[float], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for j, h in enumerate(hidden):
        layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout[j] if j < len(dropout) else 0.0)]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def id_table(n: int, dim: int) -> nn.Embedding:
    """One learned row per known video plus a zero padding row at index n (unknown or cold)."""
    emb = nn.Embedding(n + 1, dim, padding_idx=n)
    nn.init.normal_(emb.weight, std=0.01)
    with torch.no_grad():
        emb.weight[n].zero_()
    return emb


def content_mlp(a: ModelArgs, in_dim: int) -> nn.Sequential | None:
    """The content path: always in the seed's towers, optional in the hybrid ones."""
    return mlp(in_dim, a.hidden_dims, a.dropout, a.embedding_dim) if (a.kind == "mlp" or a.use_content) else None


class MeanOf(nn.Module):
    """The average of several networks of one shape: a steadier map for cold-start videos than
    any one of them (each distilled from its own seed; one alone swings with the seed)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


def item_content(a: ModelArgs) -> nn.Module | None:
    """The item tower's content path; with content_ensemble > 1 (hybrid), an average of MLPs."""
    if a.kind == "hybrid" and a.use_content and a.content_ensemble > 1:
        return MeanOf([content_mlp(a, a.item_dim) for _ in range(a.content_ensemble)])
    return content_mlp(a, a.item_dim)


def _pad_index(idx: torch.Tensor, n: int) -> torch.Tensor:
    """-1 (or anything out of range) -> the padding row n."""
    return torch.where((idx >= 0) & (idx < n), idx, torch.full_like(idx, n))


class UserTower(nn.Module):
    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        self.kind, self.normalize, self.n_items = a.kind, a.normalize, a.n_items
        self.content = content_mlp(a, a.user_dim) if (a.kind == "mlp" or a.user_content) else None
        if a.kind == "hybrid":
            # W: one row per video; the user vector is the sum over the liked videos (x_u W).
            self.history = id_table(a.n_items, a.embedding_dim)

    def forward(self, features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        out = self.content(features) if self.content is not None else 0.0  # (B, D)
        if self.kind == "hybrid":
            h = self.history(_pad_index(history, self.n_items))  # (B, L, D)
            out = out + h.sum(dim=1)  # (B, D)
        return F.normalize(out, p=2, dim=-1) if self.normalize else out


class ItemTower(nn.Module):
    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        self.kind, self.normalize, self.n_items = a.kind, a.normalize, a.n_items
        self.content = item_content(a)
        if a.kind == "hybrid":
            self.ids = id_table(a.n_items, a.embedding_dim)

    def forward(self, features: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
        if self.kind == "mlp":
            out = self.content(features)  # (B, D)
        else:
            idx = _pad_index(item_index, self.n_items)
            out = self.ids(idx)  # (B, D); zero for a cold video
            if self.content is not None:
                cold = (idx == self.n_items).to(features.dtype).unsqueeze(-1)  # (B, 1)
                out = out + cold * self.content(features)
        return F.normalize(out, p=2, dim=-1) if self.normalize else out


class TwoTower(nn.Module):
    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        self.args = a
        self.user = UserTower(a)
        self.item = ItemTower(a)

    @staticmethod
    def score(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u * v).sum(dim=-1)  # (B,)

    def forward(self, uf: torch.Tensor, hist: torch.Tensor, itf: torch.Tensor,
                item_index: torch.Tensor) -> torch.Tensor:
        """Probability of a like (seed: sigmoid of the dot product)."""
        return torch.sigmoid(self.score(self.user(uf, hist), self.item(itf, item_index)))
