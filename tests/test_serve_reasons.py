"""The in-memory reasons index and the search statement the service prepares."""

import numpy as np
import pytest
from psycopg import sql

from tests.helpers import load_world
from tests.test_serve import client, setup_model, warm_user, world  # noqa: F401  (fixtures)
from twotower.serve.reasons import ReasonIndex
from twotower.serve.recommend import _statement


def sql_reasons(conn, user_id: str, videos: list[str]) -> list[list[str]]:
    """The reference: the same rule written as the joins the service used to run in SQL."""
    liked = [v for (v,) in conn.execute(
        "SELECT video_id FROM user_video_decisions WHERE user_id=%s AND decision_type='like' "
        "ORDER BY created_at DESC LIMIT 200", (user_id,))]
    out = []
    for v in videos:
        tags = [t for (t,) in conn.execute(
            "SELECT DISTINCT t.tag_name FROM video_tags t WHERE t.video_id=%s AND t.tag_name IN "
            "(SELECT tag_name FROM video_tags WHERE video_id = ANY(%s)) ORDER BY 1 LIMIT 3", (v, liked))]
        perf = [p for (p,) in conn.execute(
            "SELECT DISTINCT p.performer_name FROM video_performers p WHERE p.video_id=%s AND p.performer_name IN "
            "(SELECT performer_name FROM video_performers WHERE video_id = ANY(%s)) ORDER BY 1 LIMIT 2", (v, liked))]
        out.append([f"tag:{t}" for t in tags] + [f"performer:{p}" for p in perf])
    return out, liked


def test_reasons_match_the_sql_rule(conn):
    load_world(conn)
    idx = ReasonIndex.load(conn)
    assert idx.videos > 0
    users = [u for (u,) in conn.execute("SELECT user_id FROM user_video_decisions WHERE decision_type='like' "
                                        "GROUP BY user_id ORDER BY count(*) DESC LIMIT 5")]
    videos = [v for (v,) in conn.execute("SELECT id FROM videos ORDER BY id LIMIT 60")] + ["not-a-video"]
    some = 0
    for u in users:
        want, liked = sql_reasons(conn, u, videos)
        got = idx.explain(liked + ["unknown-liked"], videos)
        assert got == want
        some += sum(map(bool, got))
    assert some > 0  # the comparison covered real shared tags, not only empty lists


def test_reasons_edge_cases():
    import polars as pl

    empty = ReasonIndex.empty()
    assert empty.explain(["a"], ["b", "c"]) == [[], []]
    assert empty.explain([], []) == []
    none = pl.DataFrame(schema={"video_id": pl.Utf8, "name": pl.Utf8})  # a catalogue without tags or performers
    assert ReasonIndex.build(none, none).explain(["a"], ["b"]) == [[]]
    tags_only = ReasonIndex.build(pl.DataFrame({"video_id": ["a", "b"], "name": ["x", "x"]}), none)
    assert tags_only.explain(["a"], ["b"]) == [["tag:x"]]


@pytest.mark.parametrize("exact", [False, True])
def test_search_statement_prepares_a_generic_plan_on_the_right_path(conn, settings, tmp_path, exact):
    """Version, dimension and k are literals, so the one cached (generic) plan of the search
    still uses the version's partial HNSW index; the exact variant must not use it."""
    load_world(conn)
    art = setup_model(conn, settings, tmp_path)
    u = warm_user(conn)
    text = _statement(art.version, art.dim, 20, True, True, exact).decode()
    params = [("user_id", "text"), ("imp", "boolean"), ("deck", "text"), ("pending", "text[]"),
              ("div", "float8"), ("explore", "float8")]
    for k, (name, kind) in enumerate(params):
        text = text.replace(f"%({name})s", f"${k + 1}::{kind}")
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute("SET hnsw.iterative_scan = relaxed_order")  # as the service's pool sets it
    conn.execute("SET enable_seqscan = off")  # 400 videos: as at scale, where a full scan costs more
    conn.execute(f"PREPARE s({', '.join(kind for _, kind in params)}) AS {text}")
    run = sql.SQL("EXECUTE s({}, true, NULL, '{{}}', NULL, NULL)").format(sql.Literal(u))
    plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + run))
    assert ("video_emb_hnsw_" in plan) is (not exact), plan
    rows = conn.execute(run).fetchall()
    assert len(rows) == 21 and rows[-1][0] is None and rows[-1][2]  # 20 videos, then the likes row
    scores = np.array([r[1] for r in rows[:-1]])
    assert (np.diff(scores) <= 1e-9).all()


def test_reasons_by_hand():
    import polars as pl

    tags = pl.DataFrame({"video_id": ["c"] * 4 + ["l"] * 4 + ["m"], "name": list("bacd") + list("abcd") + ["zz"]})
    perf = pl.DataFrame({"video_id": ["c"] * 3 + ["l"] * 2, "name": ["y", "x", "z", "x", "y"]})
    idx = ReasonIndex.build(tags, perf)
    assert idx.explain(["l"], ["c", "m", "nope"]) == [
        ["tag:a", "tag:b", "tag:c", "performer:x", "performer:y"], [], []]
    assert idx.explain(["m"], ["c"]) == [[]]
    assert idx.explain(["l", "c"], ["l"], max_tags=1, max_performers=0) == [["tag:a"]]


def test_reasons_index_reloads_only_when_the_catalogue_changes(client, world):  # noqa: F811
    state = client.app.state.service
    first = state.reasons
    client.portal.call(state.refresh_reasons)
    assert state.reasons is first  # nothing changed: no rebuild
    v = world.execute("SELECT id FROM videos ORDER BY id LIMIT 1").fetchone()[0]
    world.execute("INSERT INTO video_tags (video_id, tag_name) VALUES (%s, 'brand-new-tag')", (v,))
    client.portal.call(state.refresh_reasons)
    assert state.reasons is not first and "tag:brand-new-tag" in state.reasons.labels


def test_reasons_keep_the_first_labels_of_an_overloaded_video(caplog):
    import polars as pl

    from twotower.serve.reasons import MAX_LABELS

    names = [f"t{i:03d}" for i in range(MAX_LABELS + 6)]
    tags = pl.DataFrame({"video_id": ["big"] * len(names) + ["l"] * len(names), "name": names * 2})
    idx = ReasonIndex.build(tags, pl.DataFrame({"video_id": [], "name": []}, schema={"video_id": pl.Utf8, "name": pl.Utf8}))
    assert idx.codes.shape[1] == MAX_LABELS and "first 64" in caplog.text
    assert idx.explain(["l"], ["big"]) == [["tag:t000", "tag:t001", "tag:t002"]]
