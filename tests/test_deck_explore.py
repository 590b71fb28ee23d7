"""Exploration for new videos: a share of a warm user's deck goes to videos without their first
20 answers, Thompson-sampled (twotower.explore_pick), dealt at evenly spread positions and
marked "source": "explore", in the service and in recommend_videos alike."""

import pytest
from fastapi.testclient import TestClient

from tests.test_serve import SVC, app_settings, rec, token, warm_user, world  # noqa: F401
from twotower.config import ServingConfig, load_config
from twotower.serve import create_app
from twotower.serve.recommend import deal


@pytest.fixture
def client(world, settings):  # noqa: F811
    with TestClient(create_app(app_settings(settings))) as c:
        yield c


def pool(conn) -> set[str]:
    conn.execute("SELECT twotower.refresh_explore(interval '0')")
    conn.commit()
    return {v for (v,) in conn.execute("SELECT video_id FROM twotower.explore_cache")}


def sql_deck(conn, user, limit=10, share=None) -> list[tuple]:
    rows = conn.execute("SELECT video_id, source, reasons FROM public.recommend_videos(%s, %s, NULL, false, NULL, %s)",
                        (limit, user, share)).fetchall()
    conn.commit()
    return rows


def test_deal_spreads_the_explored_cards():
    r = [{"v": i} for i in range(10)]
    assert [x["v"] for x in deal(r, [{"v": "x"}], 10)] == [0, 1, 2, 3, "x", 4, 5, 6, 7, 8]
    assert [x["v"] for x in deal(r, [{"v": "x"}, {"v": "y"}], 10)] == [0, 1, "x", 2, 3, 4, "y", 5, 6, 7]
    assert [x["v"] for x in deal(r[:3], [{"v": "x"}], 10)] == [0, "x", 1, 2]  # a short ranked list
    assert [x["v"] for x in deal([], [{"v": "x"}, {"v": "y"}], 2)] == ["x", "y"]


def test_explore_share_deals_marked_new_videos_in_every_path(client, world):  # noqa: F811
    u = warm_user(world)
    fresh = pool(world)
    decided = {v for (v,) in world.execute("SELECT video_id FROM user_video_decisions WHERE user_id = %s", (u,))}
    assert len(fresh - decided) > 20
    plain = [i["video_id"] for i in rec(client, u, 10, exclude_impressions=False).json()["items"]]
    body = rec(client, u, 10, exclude_impressions=False, explore_share=0.2).json()
    assert body["source"] == "two_tower" and len(body["items"]) == 10
    marked = [k for k, i in enumerate(body["items"]) if i.get("source") == "explore"]
    assert marked == [2, 6]  # floor(j * 11 / 3): the 3rd and 7th cards
    for k in marked:
        item = body["items"][k]
        assert item["video_id"] in fresh - decided - set(plain[:8]) and item["reasons"] == ["new video"]
    assert [i["video_id"] for k, i in enumerate(body["items"]) if k not in marked] == plain[:8]
    assert all("source" not in i for k, i in enumerate(body["items"]) if k not in marked)
    rows = sql_deck(world, u, 10, 0.2)
    assert [k for k, r in enumerate(rows) if r[1] == "explore"] == [2, 6]
    assert [r[0] for k, r in enumerate(rows) if k not in (2, 6)] == plain[:8]
    assert {r[0] for k, r in enumerate(rows) if k in (2, 6)} <= fresh - decided
    assert all(r[2] == ["new video"] for r in rows if r[1] == "explore")
    # the installation's share (serving.explore_share, written by db init) when the request names none
    world.execute("UPDATE twotower.settings SET value = '0.3' WHERE key = 'explore_share'")
    world.commit()
    body = rec(client, u, 10, exclude_impressions=False).json()
    assert sum(i.get("source") == "explore" for i in body["items"]) == 3
    assert sum(r[1] == "explore" for r in sql_deck(world, u, 10)) == 3
    assert sum(i.get("source") == "explore" for i in rec(client, u, 10, explore_share=0).json()["items"]) == 0
    # without a settings row (a Supabase install from migration files, no `db init`) SQL uses the
    # shipped default, 0.2: two cards of ten
    world.execute("DELETE FROM twotower.settings WHERE key = 'explore_share'")
    world.commit()
    assert sum(r[1] == "explore" for r in sql_deck(world, u, 10)) == 2
    # a cold user has no vector to score new videos with: the cold-start list, unexplored
    cold = rec(client, "cold-explorer", 10, headers=SVC, explore_share=0.5).json()
    assert cold["source"] == "cold_start" and all("source" not in i for i in cold["items"])


def test_the_posterior_follows_the_answers_and_the_filters_hold(client, world):  # noqa: F811
    u = warm_user(world)
    fresh = pool(world)
    decided = {v for (v,) in world.execute("SELECT video_id FROM user_video_decisions WHERE user_id = %s", (u,))}
    star = sorted(fresh - decided)[0]
    # one new video liked by everyone who answered it, the rest noped: Thompson picks the star
    world.execute("UPDATE twotower.explore_cache SET likes = CASE WHEN video_id = %s THEN 19 ELSE 0 END, "
                  "nopes = CASE WHEN video_id = %s THEN 0 ELSE 19 END", (star, star))
    world.commit()
    picks = []
    for _ in range(10):
        items = rec(client, u, 10, exclude_impressions=False, explore_share=0.1).json()["items"]
        picks += [i["video_id"] for i in items if i.get("source") == "explore"]
    assert len(picks) == 10 and picks.count(star) >= 9, picks
    assert star in {r[0] for r in sql_deck(world, u, 10, 0.1) if r[1] == "explore"}
    # muted (or decided) new videos are never explored
    assert client.post(f"/v1/users/{u}/mutes", json={"kind": "video", "value": star}, headers=token(u)).status_code == 200
    for _ in range(5):
        items = rec(client, u, 10, exclude_impressions=False, explore_share=0.3).json()["items"]
        assert star not in {i["video_id"] for i in items}
        assert star not in {r[0] for r in sql_deck(world, u, 10, 0.3)}


def test_explore_share_is_validated(client, world):  # noqa: F811
    from psycopg import errors

    u = warm_user(world)
    for bad in (1.5, -0.1, "0.2", True):
        assert rec(client, u, 10, explore_share=bad).status_code == 422
    with pytest.raises(errors.InvalidParameterValue):
        world.execute("SELECT * FROM public.recommend_videos(10, %s, NULL, true, NULL, 2)", (u,))
    world.rollback()


def test_exploration_is_on_by_default(monkeypatch):
    """The shipped default (the simulation's choice); the test suite itself runs with it off."""
    monkeypatch.delenv("TWOTOWER__SERVING__EXPLORE_SHARE")
    assert ServingConfig().explore_share == load_config().serving.explore_share == 0.2


def test_the_pools_vectors_are_copied_and_read_the_same_without_the_copy(world):  # noqa: F811
    """refresh_explore copies the pool's vectors of each active version (explore_vectors, so a
    call reads one small table); without the copy (a version embedded since) explore_pick reads
    video_embeddings and scores every candidate the same."""
    fresh = pool(world)
    copy = dict(world.execute("SELECT video_id, embedding::text FROM twotower.explore_vectors WHERE model_version = 'v1'"))
    own = dict(world.execute("SELECT video_id, embedding::text FROM twotower.video_embeddings "
                             "WHERE model_version = 'v1' AND video_id = ANY(%s)", (list(fresh),)))
    assert copy and copy == own
    u = warm_user(world)
    q = world.execute("SELECT embedding FROM twotower.user_embeddings WHERE model_version = 'v1' AND user_id = %s",
                      (u,)).fetchone()[0]
    pick = "SELECT video_id, score FROM twotower.explore_pick('v1', %s, %s, 500, '{}', '{}', '{}', '{}', 0, '{}')"
    with world.transaction(force_rollback=True):
        with_copy = dict(world.execute(pick, (q, u)).fetchall())
        world.execute("DELETE FROM twotower.explore_vectors")
        without = dict(world.execute(pick, (q, u)).fetchall())
    assert len(with_copy) > 10 and with_copy == without
