import numpy as np
import polars as pl
import pytest

from tests.conftest import count
from twotower.data import synth
from twotower.errors import InvalidInput

SPEC = synth.SynthSpec(users=600, videos=1500, decisions=30_000, seed=3)


@pytest.fixture(scope="module")
def data():
    return synth.generate(SPEC)


def test_deterministic(data):
    again = synth.generate(SPEC)
    assert again.decisions.equals(data.decisions)
    assert again.videos.equals(data.videos)
    other = synth.generate(synth.SynthSpec(users=600, videos=1500, decisions=30_000, seed=4))
    assert not other.decisions.equals(data.decisions)


def test_statistical_properties(data):
    d = data.decisions
    assert d.height == SPEC.decisions
    assert d.select(pl.struct("user_id", "video_id").n_unique()).item() == d.height
    like = (d["decision_type"] == "like").mean()
    assert 0.2 <= like <= 0.6
    per_video = d.group_by("video_id").len()["len"].sort(descending=True).to_numpy()
    top = per_video[: len(per_video) // 100].sum() / per_video.sum()
    assert top > 0.1, "top 1% of videos should get far more than 1% of decisions"
    per_user = d.group_by("user_id").len()["len"].to_numpy()
    assert per_user.max() > 10 * np.median(per_user)  # very different activity levels
    assert data.profiles.height - d["user_id"].n_unique() >= int(SPEC.users * SPEC.cold_user_share)
    assert data.videos.height - d["video_id"].n_unique() >= int(SPEC.videos * SPEC.cold_video_share)
    hours = d["created_at"].dt.hour().value_counts()
    assert hours["count"].max() > 3 * hours["count"].min()  # a daily rhythm
    assert 50 <= data.tags["tag_name"].n_unique() <= 300
    assert data.performers["performer_name"].n_unique() > 500
    assert data.videos["price"].min() > 0 and data.videos["price"].max() > 3 * data.videos["price"].median()


def test_likes_follow_taste(data):
    """Tags carry signal: a user's liked videos share tags more than their nopes do."""
    d = data.decisions.join(data.tags, on="video_id")
    liked_tags = d.filter(pl.col("decision_type") == "like").group_by("user_id", "tag_name").len()
    top = liked_tags.sort("len", descending=True).group_by("user_id").first().select("user_id", "tag_name")
    hit = d.join(top, on=["user_id", "tag_name"]).group_by("decision_type").len()
    base = d.group_by("decision_type").len()
    r = hit.join(base, on="decision_type").with_columns(share=pl.col("len") / pl.col("len_right"))
    share = dict(zip(r["decision_type"], r["share"], strict=True))
    assert share["like"] > share["nope"]


def test_rejects_impossible_spec():
    with pytest.raises(InvalidInput):
        synth.generate(synth.SynthSpec(users=5, videos=10, decisions=1000))


def test_load_and_replace(conn, data):
    counts = synth.load(conn, data)
    assert counts["user_video_decisions"] == SPEC.decisions
    assert count(conn, "user_video_decisions") == SPEC.decisions
    with pytest.raises(InvalidInput, match="--replace"):
        synth.load(conn, data)
    assert count(conn, "user_video_decisions") == SPEC.decisions
    small = synth.generate(synth.SynthSpec(users=50, videos=100, decisions=500, seed=1))
    synth.load(conn, small, replace=True)
    assert count(conn, "user_video_decisions") == 500 and count(conn, "videos") == 100
