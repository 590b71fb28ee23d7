from datetime import timedelta

import pytest
import torch

from twotower.config import load_config
from twotower.data import synth
from twotower.data.load import Frames
from twotower.errors import InvalidInput, NotFound
from twotower.evaluate import Catalog, build_context, evaluate_recommender, make_split
from twotower.evaluate.baselines import PopularityRec
from twotower.train import CheckpointRecommender, load_checkpoint, train

SMALL = ["model.embedding_dim=32", "model.hidden_dims=[64]", "training.distill_epochs=3"]


@pytest.fixture(scope="module")
def world():
    d = synth.generate(synth.SynthSpec(users=400, videos=800, decisions=24_000, seed=5))
    f = Frames(d.profiles, d.videos, d.tags, d.performers, d.decisions)
    cat = Catalog.from_frames(f)
    split = make_split(cat)
    return f, cat, split, build_context(cat, split, f.tags, f)


def run(world, tmp_path, overrides, name="m", **kw):
    f, cat, split, _ = world
    return train(load_config(None, SMALL + overrides), f, cat, split, tmp_path / name, quiet=True, **kw)


def test_short_run_lowers_validation_loss(world, tmp_path):
    r = run(world, tmp_path, ["training.epochs=3", "training.loss=softmax"])
    start = next(h for h in r.history if h.get("stage") == "start")
    epochs = [h for h in r.history if h.get("epoch", -1) >= 0 and "loss" in h]
    assert len(epochs) == 3
    assert min(h["val_loss"] for h in epochs) < start["val_loss"]
    assert epochs[-1]["positives_per_s"] > 0 and 0 <= epochs[-1]["prep_share"] < 1


@pytest.mark.parametrize("epochs", [0, 1])
def test_hybrid_beats_popularity(world, tmp_path, epochs):
    _, _, _, ctx = world
    r = run(world, tmp_path, ["model.kind=hybrid", "model.init=ease_svd", "model.normalize=false",
                              f"training.epochs={epochs}", "training.loss=softmax",
                              "training.early_stopping_metric=ndcg@10"])
    ours = evaluate_recommender(CheckpointRecommender(r.checkpoint), ctx, [10]).metrics["ndcg@10"]
    pop = evaluate_recommender(PopularityRec(), ctx, [10]).metrics["ndcg@10"]
    assert ours > pop * 1.1


@pytest.mark.parametrize("loss", ["bce", "margin"])
def test_seed_losses_train(world, tmp_path, loss):
    r = run(world, tmp_path, ["training.epochs=2", f"training.loss={loss}"])
    epochs = [h for h in r.history if h.get("epoch", -1) >= 0 and "loss" in h]
    assert len(epochs) == 2 and all(h["loss"] > 0 for h in epochs)
    st = load_checkpoint(r.checkpoint)
    assert set(st) >= {"model_state", "pipeline", "config", "metrics", "data_window", "model_args"}


def test_fixed_seed_reproduces(world, tmp_path):
    a = run(world, tmp_path, ["training.epochs=2", "training.loss=softmax"], "a")
    b = run(world, tmp_path, ["training.epochs=2", "training.loss=softmax"], "b")
    strip = lambda h: [{k: v for k, v in x.items() if "second" not in k and "per_s" not in k  # noqa: E731
                        and k != "prep_share"} for x in h]
    assert strip(a.history) == strip(b.history)
    sa, sb = load_checkpoint(a.checkpoint), load_checkpoint(b.checkpoint)
    assert all(torch.equal(sa["model_state"][k], sb["model_state"][k]) for k in sa["model_state"])


def test_resume_continues_from_the_saved_epoch(world, tmp_path, monkeypatch):
    full = run(world, tmp_path, ["training.epochs=3", "training.loss=softmax"], "full")
    import twotower.train.loop as tr  # the loop calls validate from its own namespace

    real, calls = tr.validate, {"n": 0}

    def crash_after_two_epochs(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # start, epoch 0, epoch 1, then the crash in epoch 2
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tr, "validate", crash_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        run(world, tmp_path, ["training.epochs=3", "training.loss=softmax"], "cut")
    monkeypatch.setattr(tr, "validate", real)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    resumed = run(world, tmp_path, ["training.epochs=3", "training.loss=softmax"], "cut", resume=True)
    last = lambda r: [h for h in r.history if "loss" in h][-1]  # noqa: E731
    assert last(resumed)["epoch"] == 2
    assert last(resumed)["val_loss"] == pytest.approx(last(full)["val_loss"], rel=1e-5)


def test_resume_needs_the_same_config(world, tmp_path):
    run(world, tmp_path, ["training.epochs=1"], "r")
    with pytest.raises(InvalidInput, match="another configuration"):
        run(world, tmp_path, ["training.epochs=2"], "r", resume=True)
    with pytest.raises(NotFound):
        run(world, tmp_path, ["training.epochs=1"], "missing", resume=True)


def test_checkpoint_from_another_split_is_refused(world, tmp_path):
    f, cat, _, _ = world
    other = make_split(cat, "random")
    r = train(load_config(None, SMALL + ["training.epochs=1"]), f, cat, other, tmp_path / "o", quiet=True)
    with pytest.raises(InvalidInput, match="leak"):
        evaluate_recommender(CheckpointRecommender(r.checkpoint), world[3], [10])


def test_item_features_use_only_tags_attached_before_the_cutoff(world):
    """new-items: a tag users attached (to a held-out video or any other) after the cutoff is not a feature
    (the leak that made the cold-start figure look 3x better than it was)."""
    import polars as pl

    from twotower.train import prepare

    f, cat, _, _ = world
    split = make_split(cat, "new-items")
    held = [str(v) for v in cat.item_ids[split.candidates]] + [str(v) for v in cat.item_ids[10:14]]
    old = [str(v) for v in cat.item_ids[:5]]
    late, early = split.cutoff + timedelta(days=1), split.cutoff - timedelta(days=1)
    extra = pl.DataFrame({"video_id": held + old, "tag_name": ["late-tag"] * len(held) + ["early-tag"] * 5,
                          "created_at": [late] * len(held) + [early] * 5},
                         schema={"video_id": pl.Utf8, "tag_name": pl.Utf8, "created_at": pl.Datetime("us", "UTC")})
    tags = pl.concat([f.tags, extra], how="diagonal_relaxed")
    frames = Frames(f.profiles, f.videos, tags, f.performers, f.decisions)
    p = prepare(load_config(None, SMALL), frames, cat, split, "fit")
    assert "early-tag" in p.pipeline.tag_vocab and "late-tag" not in p.pipeline.tag_vocab
    ctx = build_context(cat, split, tags, frames)
    assert "late-tag" not in set(ctx.frames.tags["tag_name"].to_list())


def test_closed_form_validation_is_scored_on_rows_it_did_not_fit(world, tmp_path):
    """The final closed form sees val; the score stored is a twin's that did not (it was 0.0000)."""
    r = run(world, tmp_path, ["model.kind=hybrid", "model.init=ease_svd", "model.normalize=false",
                              "training.epochs=0"], name="cf")
    st = load_checkpoint(r.checkpoint)
    assert r.metrics["val_ndcg@10"] > 0.01 and 0.5 < r.metrics["val_auc"] < 1.0
    assert "twin" in st["info"]["validated_on"] and st["info"]["ease_lambda"] > 0


def test_same_seed_and_threads_give_the_same_model_and_epochs_are_counted(world, tmp_path):
    over = ["training.epochs=2", "training.threads=1", "training.early_stopping_patience=5"]
    a, b = run(world, tmp_path, over, name="a"), run(world, tmp_path, over, name="b")
    sa, sb = load_checkpoint(a.checkpoint), load_checkpoint(b.checkpoint)
    assert all(torch.equal(sa["model_state"][k], sb["model_state"][k]) for k in sa["model_state"])
    assert a.epochs_run == 2 and sa["info"]["threads"] == 1
    assert torch.get_num_threads() == 1


def test_content_ensemble_distills_each_member_and_averages_them(world, tmp_path):
    """Cold-start vectors from the average of 3 content MLPs, each fitted to the ID vectors. On
    the held-out videos the average's MSE is at most the members' mean MSE (convexity), and one
    MLP (the default) trains exactly as before."""
    over = ["model.kind=hybrid", "model.init=ease_svd", "model.normalize=false", "training.epochs=0",
            "training.threads=1"]
    r = run(world, tmp_path, [*over, "model.content_ensemble=3"], name="k3")
    st = load_checkpoint(r.checkpoint)
    each = st["info"]["distill_member_val_mse"]
    assert len(each) == 3 and len(set(each)) == 3  # three different fits
    assert st["info"]["distill_val_mse"] <= sum(each) / 3 + 1e-7
    assert {h.get("member", 0) for h in st["history"] if h.get("stage") == "distill"} == {0, 1, 2}
    assert sum(k.startswith("item.content.members.2.") for k in st["model_state"]) > 0
    one = load_checkpoint(run(world, tmp_path, over, name="k1").checkpoint)
    assert "distill_member_val_mse" not in one["info"] and any(k.startswith("item.content.0.") for k in one["model_state"])
    assert one["model_args"]["content_ensemble"] == 1


def test_content_ensemble_must_be_positive():
    with pytest.raises(InvalidInput, match="content_ensemble must be >= 1"):
        load_config(None, ["model.content_ensemble=0"])
