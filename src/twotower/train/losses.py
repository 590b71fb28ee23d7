"""Losses: BCE on the dot product (the seed's), margin, in-batch softmax with logQ correction."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
