"""Checkpoints: written atomically, loaded with weights_only=True."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from twotower.errors import InvalidInput, NotFound
from twotower.model import ModelArgs, TwoTower


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
