from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.preprocessing import StandardScaler

from twotower.data import load_frames, synth
from twotower.features import FeaturePipeline

T = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731


def tiny():
    videos = pl.DataFrame({
        "id": ["a", "b", "c"], "price": [100.0, 300.0, None], "duration_seconds": [60, 120, None],
        "product_released_at": [T(2024, 1, 1), T(2024, 1, 11), None],
    }, schema_overrides={"product_released_at": pl.Datetime("us", "UTC")})
    tags = pl.DataFrame({"video_id": ["a", "a", "b", "c"], "tag_name": ["t1", "t2", "t1", "t3"]})
    perf = pl.DataFrame({"video_id": ["a"], "performer_name": ["p1"]})
    profiles = pl.DataFrame({"user_id": ["x", "y"], "created_at": [T(2024, 1, 1), T(2024, 1, 20)]})
    decisions = pl.DataFrame({
        "user_id": ["x", "x", "x", "y"], "video_id": ["a", "b", "c", "b"],
        "decision_type": ["like", "nope", "like", "nope"],
        "created_at": [T(2024, 2, 1, 10), T(2024, 2, 2, 12), T(2024, 2, 3, 14), T(2024, 2, 4)],
    })
    return videos, tags, perf, profiles, decisions


def fit_tiny():
    v, t, p, pr, d = tiny()
    return FeaturePipeline.fit(v, t, p, pr, d, min_tag_freq=1, min_actress_freq=1), (v, t, p, pr, d)


def test_item_vectors_by_hand():
    pipe, (v, t, p, _, _) = fit_tiny()
    assert pipe.tag_vocab == ["t1", "t2", "t3"] and pipe.performer_vocab == ["p1"]
    assert pipe.item_feature_dim == 3 + 3 + 1 and pipe.user_feature_dim == 9 + 3 + 1
    m = pipe.item_matrix(np.array(["a", "b", "c"]), v, t, p).toarray()
    # price mean 200 std 100; recency (ref Jan 11) 10 and 0 days: mean 5 std 5; duration 90 +- 30
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(m[0], [-1, 1, -1, r, r, 0, 1], atol=1e-6)
    np.testing.assert_allclose(m[1], [1, -1, 1, 1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(m[2], [0, 0, 0, 0, 0, 1, 0], atol=1e-6)  # missing -> mean -> 0


def test_user_vector_by_hand():
    pipe, (v, t, p, pr, d) = fit_tiny()
    as_of = T(2024, 2, 5)
    m = pipe.user_matrix(np.array(["x", "y"]), pr, d, v, t, p, as_of=as_of).toarray()
    raw_x = [35.0, 100.0, 100.0, 2, 1, 3, 2 / 3, (as_of - T(2024, 2, 3, 14)).total_seconds() / 86400]
    np.testing.assert_allclose(m[0, :8], pipe.user_scaler.transform(np.array([raw_x]))[0], atol=1e-6)
    assert m[0, 8] == pytest.approx(12 / 23)  # mean like hour (10 + 14) / 2
    np.testing.assert_allclose(m[0, 9:12], np.ones(3) / np.sqrt(3), atol=1e-6)
    assert m[0, 12] == pytest.approx(1.0)
    # y: no likes -> like hour 0.5, empty bags, missing price/last like -> 0 after scaling
    assert m[1, 8] == pytest.approx(0.5) and not m[1, 9:].any()
    assert m[1, 1] == pytest.approx(0.0) and m[1, 7] == pytest.approx(0.0)


def test_scaler_matches_sklearn():
    pipe, (v, t, p, pr, d) = fit_tiny()
    raw = np.array([[1.0, 2.0, np.nan], [3.0, 6.0, 5.0], [5.0, 1.0, 7.0]])
    from twotower.features import Scaler

    s = Scaler.fit(["a", "b", "c"], raw)
    ref = StandardScaler().fit(raw)
    np.testing.assert_allclose(s.mean, ref.mean_, atol=1e-9)
    np.testing.assert_allclose(s.scale, ref.scale_, atol=1e-9)


def test_no_leakage_from_later_decisions():
    pipe, (v, t, p, pr, d) = fit_tiny()
    cut = T(2024, 2, 2, 12)  # the nope at exactly this time must not count
    before = pipe.user_matrix(np.array(["x"]), pr, d, v, t, p, as_of=cut).toarray()
    later = pl.concat([d, pl.DataFrame({"user_id": ["x"], "video_id": ["b"], "decision_type": ["like"],
                                        "created_at": [cut + timedelta(days=1)]})])
    after = pipe.user_matrix(np.array(["x"]), pr, later, v, t, p, as_of=cut).toarray()
    np.testing.assert_array_equal(before, after)
    raw_nopes = before[0, 4] * pipe.user_scaler.scale[4] + pipe.user_scaler.mean[4]
    assert raw_nopes == pytest.approx(0.0)


def test_pipeline_round_trips():
    pipe, _ = fit_tiny()
    again = FeaturePipeline.from_dict(pipe.to_dict())
    assert again.to_dict() == pipe.to_dict()
    sch = pipe.schema()
    assert sch["user"]["dim"] == pipe.user_feature_dim and sch["item"]["dim"] == pipe.item_feature_dim
    assert [b["offset"] for b in sch["item"]["blocks"]] == [0, 3, 6]


def test_sql_functions_match_bulk_pipeline(conn):
    synth.load(conn, synth.generate(synth.SynthSpec(users=120, videos=300, decisions=4000, seed=2)))
    # Text for the TF-IDF input: words, Japanese (bigrams), a missing title, a description.
    conn.execute("""UPDATE videos SET title = CASE WHEN n % 7 = 0 THEN NULL WHEN n % 3 = 0 THEN '夏の海 Summer ' || n % 5
                                                 ELSE 'Night drive part ' || n % 4 END,
                                      description = CASE WHEN n % 2 = 0 THEN '海辺の恋 long-take, beach' END
                    FROM (SELECT id AS vid, row_number() OVER (ORDER BY id) AS n FROM videos) x WHERE id = x.vid""")
    f = load_frames(conn)
    pipe = FeaturePipeline.fit(f.videos, f.tags, f.performers, f.profiles, f.decisions,
                               min_tag_freq=2, min_actress_freq=1, item_inputs=["genre", "maker", "text"],
                               max_maker_vocab=50, min_text_freq=1)
    assert pipe.genre_vocab and 0 < len(pipe.maker_vocab) <= 50 and {"海辺", "辺の", "summer", "beach"} <= set(pipe.text_vocab)
    as_of = datetime(2026, 5, 1, tzinfo=UTC)  # inside the window: later decisions must not count
    users = f.profiles["user_id"].to_numpy()[:40]
    items = f.videos["id"].to_numpy()[:40]
    bulk_u = pipe.user_matrix(users, f.profiles, f.decisions, f.videos, f.tags, f.performers, as_of=as_of).toarray()
    bulk_i = pipe.item_matrix(items, f.videos, f.tags, f.performers).toarray()
    for k, uid in enumerate(users):
        j = conn.execute("SELECT get_user_embedding_features(%s, %s)", (uid, as_of)).fetchone()[0]
        np.testing.assert_allclose(pipe.user_vector_from_json(j), bulk_u[k], atol=1e-6, err_msg=uid)
    for k, vid in enumerate(items):
        j = conn.execute("SELECT get_item_embedding_features(%s)", (vid,)).fetchone()[0]
        np.testing.assert_allclose(pipe.item_vector_from_json(j), bulk_i[k], atol=1e-6, err_msg=vid)
    assert conn.execute("SELECT get_user_embedding_features('nobody')").fetchone()[0] is None
    assert conn.execute("SELECT get_item_embedding_features('nothing')").fetchone()[0] is None


def test_text_tokens_and_tfidf_match_scikit_learn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from twotower.features_content import fit_text, text_matrix, tokens

    docs = ["Toy Story (1995)", "夏の海", "a Toy, toy STORY", None, "x 海"]
    frame = pl.DataFrame({"_i": range(len(docs)), "text": docs}, schema={"_i": pl.Int64, "text": pl.Utf8})
    got = tokens(frame).group_by("_i").agg(pl.col("term").sort()).sort("_i")
    assert dict(zip(got["_i"], got["term"].to_list(), strict=True)) == {
        0: ["1995", "story", "toy"], 1: ["の海", "夏の"], 2: ["story", "toy", "toy"], 4: ["海"]}
    videos = pl.DataFrame({"title": docs, "description": [None, None, "toy", None, None]})
    vocab, idf = fit_text(videos, max_vocab=10, min_freq=1)
    assert vocab[:2] == ["story", "toy"]  # most documents first, ties by term
    m = text_matrix(frame.with_columns(pl.Series("text", ["Toy Story (1995)", "夏の海", "a Toy, toy STORY toy",
                                                          None, "x 海"])), vocab, idf, len(docs)).toarray()

    def analyzer(doc):
        return tokens(pl.DataFrame({"_i": [0], "text": [doc]}))["term"].to_list()

    full = [" ".join(x for x in (t, d) if x) for t, d in zip(videos["title"], videos["description"], strict=True)]
    sk = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, smooth_idf=True, vocabulary=vocab)
    sk.fit(full)
    want = sk.transform(["Toy Story (1995)", "夏の海", "a Toy, toy STORY toy", "", "x 海"]).toarray()
    np.testing.assert_allclose(m, want, atol=1e-9)


def test_item_inputs_off_by_default_and_checked():
    pipe, (v, t, p, _, _) = fit_tiny()
    assert pipe.genre_vocab == pipe.maker_vocab == pipe.text_vocab == []
    old = pipe.to_dict()
    for k in ("genre_vocab", "maker_vocab", "text_vocab", "text_idf"):
        old.pop(k)  # a checkpoint from before the inputs existed
    assert FeaturePipeline.from_dict(old).item_feature_dim == pipe.item_feature_dim
    with pytest.raises(ValueError, match="unknown"):
        FeaturePipeline.fit(*tiny(), item_inputs=["colour"])
