from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from twotower.data.load import Frames
from twotower.errors import InvalidInput
from twotower.evaluate import Catalog, make_split


def frames(n_users=30, n_items=60, per_user=20, seed=0) -> Frames:
    rng = np.random.default_rng(seed)
    rows = []
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for u in range(n_users):
        items = rng.choice(n_items, per_user, replace=False)
        for j, i in enumerate(items):
            # a few exact ties in time, to check the stable tie-break
            rows.append((f"u{u:02d}", f"v{i:03d}", "like" if rng.random() < 0.5 else "nope",
                         t0 + timedelta(hours=int(u * 3 + (j // 2) * 7))))
    d = pl.DataFrame(rows, schema=["user_id", "video_id", "decision_type", "created_at"], orient="row")
    videos = pl.DataFrame({"id": [f"v{i:03d}" for i in range(n_items)]})
    empty = pl.DataFrame({"video_id": [], "tag_name": []}, schema={"video_id": pl.Utf8, "tag_name": pl.Utf8})
    profiles = pl.DataFrame({"user_id": [f"u{u:02d}" for u in range(n_users)]})
    return Frames(profiles, videos, empty, empty.rename({"tag_name": "performer_name"}), d)


@pytest.fixture(scope="module")
def catalog():
    return Catalog.from_frames(frames())


def test_temporal_user_is_leak_free_and_deterministic(catalog):
    s = make_split(catalog, "temporal-user", 0.2)
    again = make_split(catalog, "temporal-user", 0.2)
    assert s.test.equals(again.test) and s.train.equals(again.train)
    last_train = s.train.group_by("u").agg(pl.col("ts").max().alias("tmax"))
    first_test = s.test.group_by("u").agg(pl.col("ts").min().alias("tmin"))
    j = last_train.join(first_test, on="u")
    assert (j["tmax"] <= j["tmin"]).all()
    assert (s.test.group_by("u").len()["len"] == 4).all()  # floor(0.2 * 20)
    # the excluded set (train decisions) never contains a test item of the same user
    keys = lambda df: set(zip(df["u"].to_list(), df["i"].to_list(), strict=True))  # noqa: E731
    assert not keys(s.train) & keys(s.test)
    ex = s.matrix("train", likes_only=False)
    assert all(ex[u, i] == 0 for u, i in keys(s.test))
    # validation is a slice of train: fit + val = train
    assert s.fit.height + s.val.height == s.train.height
    assert keys(s.fit) | keys(s.val) == keys(s.train)


def test_temporal_global(catalog):
    s = make_split(catalog, "temporal-global", 0.25)
    assert s.train["ts"].max() < s.cutoff <= s.test["ts"].min()
    assert s.val["ts"].min() >= s.fit["ts"].max()


def test_random_split_is_seeded(catalog):
    a, b = make_split(catalog, "random", seed=1), make_split(catalog, "random", seed=1)
    c = make_split(catalog, "random", seed=2)
    assert a.test.equals(b.test) and not a.test.equals(c.test)


def test_new_items_holds_videos_out_entirely():
    f = frames()
    late = pl.col("video_id") >= "v050"  # these videos appear only after everything else
    f.decisions = f.decisions.with_columns(
        pl.when(late).then(pl.col("created_at") + timedelta(days=100)).otherwise(pl.col("created_at")))
    s = make_split(Catalog.from_frames(f), "new-items", 0.2)
    test_items = set(s.test["i"].to_list())
    assert test_items and not test_items & set(s.train["i"].to_list())
    assert set(s.candidates.tolist()) == test_items
    assert s.train["ts"].max() < s.cutoff


def test_bad_split_inputs(catalog):
    with pytest.raises(InvalidInput, match="unknown split"):
        make_split(catalog, "sideways")
    f = frames()
    f.decisions = f.decisions.with_columns(pl.lit("nope").alias("decision_type"))
    with pytest.raises(InvalidInput, match="no test users"):
        make_split(Catalog.from_frames(f), "temporal-user")


def test_ties_follow_row_order_not_id_spelling():
    t = datetime(2024, 1, 1, tzinfo=UTC)
    d = pl.DataFrame({"user_id": ["a", "a", "b", "b"], "video_id": ["9", "10", "10", "9"],
                      "decision_type": ["like"] * 4, "created_at": [t] * 4})
    f = Frames(pl.DataFrame({"user_id": ["a", "b"]}), pl.DataFrame({"id": ["9", "10"]}),
               pl.DataFrame(schema={"video_id": pl.Utf8, "tag_name": pl.Utf8}),
               pl.DataFrame(schema={"video_id": pl.Utf8, "performer_name": pl.Utf8}), d)
    s = make_split(Catalog.from_frames(f), "temporal-user", 0.5)
    assert sorted(zip(s.test["user_id"].to_list(), s.test["video_id"].to_list(), strict=True)) == [("a", "10"), ("b", "9")]
