"""Training: examples from decisions, negative sampling, losses, AdamW, clipping, early
stopping, atomic checkpoints and resume. Read top to bottom: prepare -> init -> epochs.

Batches are built by tensor indexing into pre-built feature matrices (no per-sample Python).
The `hybrid` family starts from a closed form (the truncated SVD of EASE's item-item matrix, or
of the like matrix itself for very large catalogues) and its content MLP learns to map a video's
features to its collaborative vector, so videos with no decision yet land in the same space.
"""

from __future__ import annotations

from twotower.train.checkpoints import load_checkpoint, model_from_state, save_checkpoint
from twotower.train.closed_form import distill_content, init_hybrid
from twotower.train.data import (
    Prepared,
    build,
    encode_items,
    encode_users,
    history_matrix,
    model_args,
    prepare,
)
from twotower.train.loop import TrainResult, physical_cores, train
from twotower.train.losses import bce_loss, margin_loss, softmax_loss
from twotower.train.recommenders import CheckpointRecommender, TrainedRecommender, run_training
from twotower.train.sampling import NegativeSampler
from twotower.train.validation import val_ndcg, validate

__all__ = ["train", "physical_cores", "TrainResult", "prepare", "build", "Prepared", "model_args", "encode_items", "encode_users", "history_matrix", "validate", "val_ndcg", "init_hybrid", "distill_content", "save_checkpoint", "load_checkpoint", "model_from_state", "CheckpointRecommender", "TrainedRecommender", "run_training", "NegativeSampler", "bce_loss", "margin_loss", "softmax_loss"]
