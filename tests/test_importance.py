"""Permutation feature importance: an input the model does not read scores exactly 0, the one
it does read ranks first; the figures travel from training to the registry and `models show`."""

from __future__ import annotations

import torch

from tests.helpers import SMALL_MODEL, load_world
from tests.test_cli import twotower
from twotower import registry
from twotower.config import load_config
from twotower.data import load_frames
from twotower.evaluate import Catalog, make_split
from twotower.export import export
from twotower.model import TwoTower
from twotower.train import train
from twotower.train.data import model_args, prepare
from twotower.train.importance import blocks, permutation_importance


def _setup(conn, kind_overrides):
    load_world(conn)
    f = load_frames(conn)
    cat = Catalog.from_frames(f)
    return load_config(None, SMALL_MODEL + kind_overrides), f, cat, make_split(cat, "temporal-user")


class Columns(torch.nn.Module):
    def __init__(self, cols: slice) -> None:
        super().__init__()
        self.cols = cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.cols]


def test_a_planted_input_ranks_first_and_unread_inputs_score_zero(conn):
    """Planted: both towers read only the tag bags, through one shared projection, so a user's
    score for a video is (about) the overlap of their liked tags with its tags, which the
    synthetic tastes make informative; every other input is unread."""
    cfg, f, cat, split = _setup(conn, ["model.kind=mlp", "model.embedding_dim=128", "model.normalize=false"])
    p = prepare(cfg, f, cat, split, "fit")
    torch.manual_seed(0)
    model = TwoTower(model_args(cfg, p))
    u_tags = next(c for n, c in blocks(p) if n == "liked_tags")
    i_tags = next(slice(b["offset"], b["offset"] + b["length"]) for b in p.pipeline.schema()["item"]["blocks"]
                  if b["name"] == "tags")
    proj = torch.nn.Linear(u_tags.stop - u_tags.start, 128, bias=False)
    model.user.content = torch.nn.Sequential(Columns(u_tags), proj)
    model.item.content = torch.nn.Sequential(Columns(i_tags), proj)
    imp = permutation_importance(model, p, seed=1)
    assert list(imp)[0] == "liked_tags" and imp["liked_tags"] > 0, imp
    unread = {k: v for k, v in imp.items() if k != "liked_tags"}
    assert unread and all(v == 0 for v in unread.values()), unread
    assert {"history", "liked_performers", "average_like_hour"} <= set(imp)
    assert any(k.startswith("user_numeric.") for k in imp)


def test_the_history_only_model_reads_only_its_history_and_it_reaches_the_registry(conn, settings, tmp_path):
    cfg, f, cat, split = _setup(conn, ["model.kind=hybrid", "model.init=ease_svd", "model.normalize=false",
                                       "training.epochs=0", "model.user_content=false"])
    r = train(cfg, f, cat, split, tmp_path / "ckpt", quiet=True)
    assert list(r.importance)[0] == "history" and r.importance["history"] > 0, r.importance
    assert all(v == 0 for k, v in r.importance.items() if k != "history")
    folder = export(r.checkpoint, None, settings.path("artifacts"), "imp")
    registry.register(conn, folder, settings.path("artifacts"))
    stored = dict(registry.importance(conn, "imp"))
    assert stored == r.importance
    env = {"DATABASE_URL": settings.database_url, "TWOTOWER_HOME": str(settings.home)}
    p = twotower("models", "show", "imp", env=env)
    assert p.returncode == 0 and "feature importance" in p.stdout and "history" in p.stdout, p.stderr
