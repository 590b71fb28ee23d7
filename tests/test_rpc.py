"""Recommendations inside the database: public.recommend_videos (supabase.rpc) answers as
POST /v1/recommendations does, and for a version whose user tower is linear in the like history
the user vector is summed in SQL, so a like written with plain SQL is in the very next answer."""


import numpy as np
import pytest
from fastapi.testclient import TestClient
from psycopg import errors

from tests.helpers import load_world
from tests.test_security import acting
from tests.test_serve import SVC, app_settings, setup_model, warm_user
from twotower import embed, registry
from twotower.embed import user_vectors_online
from twotower.export import load_artifacts
from twotower.serve import create_app

LINEAR = ["model.user_content=false"]


def serve_version(conn, settings, tmp_path, version: str, extra=None, activate: bool = True):
    return setup_model(conn, settings, tmp_path, version, activate=activate, extra=extra)


@pytest.fixture
def sql_world(conn, settings, tmp_path):
    load_world(conn)
    art = serve_version(conn, settings, tmp_path, "lin", LINEAR)
    return conn, art


def rpc(conn, limit=20, user=None):
    return conn.execute("SELECT video_id, score, model_version, source, reasons FROM public.recommend_videos(%s, %s)",
                        (limit, user)).fetchall()


def test_export_says_the_user_vector_is_sql_and_sql_equals_onnx(sql_world):
    conn, art = sql_world
    assert art.meta["user_vector"] == "sql" and "sql" in art.meta["consumers"]["user_vector"]
    assert conn.execute("SELECT user_vector FROM embedding_model_versions WHERE version = 'lin'").fetchone()[0] == "sql"
    users = [r[0] for r in conn.execute("SELECT user_id FROM profiles ORDER BY user_id")]
    assert len(users) >= 150
    onnx, js = user_vectors_online(conn, art, users)
    checked = 0
    for u, v, j in zip(users, onnx, js, strict=True):
        s = conn.execute("SELECT twotower.sql_user_vector('lin', %s, %s)", (u, art.pipeline.max_history)).fetchone()[0]
        if j is None or not j["like_count"]:
            assert s is None and np.allclose(v, 0)  # no likes: nothing to sum (the service's cold start)
            continue
        np.testing.assert_allclose(s.to_numpy(), v, atol=1e-5)
        checked += 1
    assert checked > 100


def test_recommend_videos_equals_the_service(sql_world, settings):
    conn, _ = sql_world
    users = [r[0] for r in conn.execute("SELECT user_id FROM user_video_decisions GROUP BY 1 ORDER BY count(*) DESC, 1 "
                                        "LIMIT 25")] + ["nobody-yet"]
    with TestClient(create_app(app_settings(settings))) as client:
        for u in users:
            api = client.post("/v1/recommendations", json={"user_id": u, "limit": 20}, headers=SVC).json()
            got = rpc(conn, 20, u)
            assert [r[0] for r in got] == [i["video_id"] for i in api["items"]], u
            np.testing.assert_allclose([r[1] for r in got], [i["score"] for i in api["items"]], atol=1e-4)
            assert [r[4] for r in got] == [i["reasons"] for i in api["items"]], u
            assert {r[3] for r in got} == {api["source"]} and {r[2] for r in got} == {api["model_version"]}
    conn.commit()


def test_a_like_written_with_sql_is_in_the_next_answer(sql_world):
    conn, _ = sql_world
    u = warm_user(conn)
    before = rpc(conn, 10, u)
    top = before[0][0]
    conn.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type) VALUES (%s, %s, 'like')", (u, top))
    after = rpc(conn, 10, u)
    assert top not in [r[0] for r in after]
    assert [r[1] for r in after] != [r[1] for r in before[1:]]  # the user vector moved, not just the list
    logged = conn.execute("SELECT count(*) FROM recommendation_log WHERE user_id = %s AND source = 'two_tower'",
                          (u,)).fetchone()[0]
    assert logged == 2


def test_who_may_call_it(sql_world):
    conn, _ = sql_world
    u = warm_user(conn)
    other = conn.execute("SELECT user_id FROM user_video_decisions WHERE user_id <> %s LIMIT 1", (u,)).fetchone()[0]
    with acting(conn, "anon") as c:
        with pytest.raises(errors.InsufficientPrivilege):
            with c.transaction():
                rpc(c)
    with acting(conn, "authenticated", u) as c:
        mine = rpc(c, 5)
        assert len(mine) == 5 and {r[3] for r in mine} == {"two_tower"}
        assert rpc(c, 5, u) == mine or len(rpc(c, 5, u)) == 5  # naming yourself is fine
        with pytest.raises(errors.InsufficientPrivilege, match="only ask for their own"):
            with c.transaction():
                rpc(c, 5, other)
    with acting(conn, "service_role") as c:
        assert len(rpc(c, 7, other)) == 7
        with pytest.raises(errors.InvalidParameterValue, match="p_user_id"):
            with c.transaction():
                rpc(c, 7)
    for bad in (0, 101):
        with pytest.raises(errors.InvalidParameterValue):
            with conn.transaction():
                rpc(conn, bad, u)


def test_cold_start_fills_and_the_stored_vector_path(conn, settings, tmp_path):
    load_world(conn)
    serve_version(conn, settings, tmp_path, "mlpish")  # the hybrid with its user-content MLP: not SQL-servable
    cold = rpc(conn, 12, "brand-new-user")
    assert len(cold) == 12 and {r[3] for r in cold} == {"cold_start"} and cold[0][4] == ["popular and recent"]
    u = warm_user(conn)
    stored = rpc(conn, 10, u)
    assert len(stored) == 10 and {r[3] for r in stored} == {"two_tower_stored"}
    # a user who decided all but 3 videos still gets `limit` rows where they exist
    conn.execute("INSERT INTO profiles (user_id) VALUES ('almost-done')")
    conn.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type) "
                 "SELECT 'almost-done', id, CASE WHEN row_number() OVER (ORDER BY id) % 3 = 0 THEN 'like' ELSE 'nope' END "
                 "FROM videos ORDER BY id OFFSET 3")
    embed.embed_all_users(conn, load_artifacts(settings.path("artifacts") / "mlpish"))
    left = rpc(conn, 10, "almost-done")
    assert sorted(r[0] for r in left) == [r[0] for r in conn.execute("SELECT id FROM videos ORDER BY id LIMIT 3")]


def test_ab_arm_matches_the_service(conn, settings, tmp_path):
    load_world(conn)
    serve_version(conn, settings, tmp_path, "a1", LINEAR)
    serve_version(conn, settings, tmp_path, "b2", LINEAR, activate=False)
    registry.set_traffic(conn, {"a1": 0.3, "b2": 0.7})
    users = [r[0] for r in conn.execute("SELECT user_id FROM user_video_decisions WHERE decision_type = 'like' "
                                        "GROUP BY 1 ORDER BY 1 LIMIT 60")]
    with TestClient(create_app(app_settings(settings))) as client:
        state = client.app.state.service
        arms = {u: state.assign(u) for u in users}
    assert set(arms.values()) == {"a1", "b2"}
    for u in users:
        assert conn.execute("SELECT twotower.ab_version(%s)", (u,)).fetchone()[0] == arms[u]
        assert {r[2] for r in rpc(conn, 3, u)} == {arms[u]}


def test_a_user_with_only_nopes_gets_the_cold_start_list_everywhere(sql_world, settings):
    """A linear model knows nothing of a user who has only said nope: a zero vector, whose
    'nearest' videos would be arbitrary. Every path answers with the cold-start list instead."""
    conn, art = sql_world
    conn.execute("INSERT INTO profiles (user_id) VALUES ('only-nopes')")
    conn.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type) "
                 "SELECT 'only-nopes', id, 'nope' FROM videos ORDER BY id LIMIT 3")
    embed.embed_all_users(conn, art)  # stores its (zero) vector
    conn.commit()
    assert {r[3] for r in rpc(conn, 10, "only-nopes")} == {"cold_start"}
    with TestClient(create_app(app_settings(settings))) as client:
        for _ in range(2):  # the stored-vector fast path, then again
            body = client.post("/v1/recommendations", json={"user_id": "only-nopes", "limit": 10}, headers=SVC).json()
            assert body["source"] == "cold_start" and len(body["items"]) == 10
    conn.commit()


def test_each_version_gets_a_search_function_and_answers_as_the_per_call_plan(sql_world):
    """The planned-once search (made by embed, re-made by every db init) gives what the per-call
    dynamic statement gives, and a version embedded without one still answers (the fallback)."""
    conn, _ = sql_world
    fname = conn.execute("SELECT twotower.search_function_name('lin')").fetchone()[0]
    exists = "SELECT to_regprocedure('twotower.' || %s || '(' || twotower.search_function_args() || ')') IS NOT NULL"
    assert conn.execute(exists, (fname,)).fetchone()[0]
    users = [r[0] for r in conn.execute("SELECT user_id FROM user_video_decisions GROUP BY 1 ORDER BY count(*) DESC, 1 "
                                        "LIMIT 15")]
    again = "SELECT video_id, score, reasons FROM twotower.recommend(%s, 20, NULL, NULL, false)"  # not the deck
    # In this small world an exact scan is cheaper than the index when planned for the values at
    # hand (the per-call plan); disabling sorts makes both plans use the HNSW index, as at scale.
    conn.execute("SET enable_sort = off")
    with_fn = {u: conn.execute(again, (u,)).fetchall()
               for u in users}
    conn.execute("SELECT twotower.drop_search_function('lin')")
    assert not conn.execute(exists, (fname,)).fetchone()[0]
    for u in users:
        got = conn.execute(again, (u,)).fetchall()
        assert [r[0] for r in got] == [r[0] for r in with_fn[u]] and len(got) == 20
        np.testing.assert_allclose([r[1] for r in got], [r[1] for r in with_fn[u]], atol=1e-6)
        assert [r[2] for r in got] == [r[2] for r in with_fn[u]]
    conn.commit()
    from twotower import db

    db.migrate(conn, demo_tables=True, roles=True)  # db init re-makes it for every embedded version
    assert conn.execute(exists, (fname,)).fetchone()[0]
    assert conn.execute("SELECT has_function_privilege('authenticated', 'twotower.' || %s || '(' || twotower.search_function_args() || ')',"
                        " 'EXECUTE')", (fname,)).fetchone()[0] is False
