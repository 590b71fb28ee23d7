"""Onboarding: a user without likes who picked tags (performers, makers) at sign-up gets decks
from them (`source: onboarding`) in the service and in recommend_videos; from their first like the
picks' cards fade out of the ranked deck (serving.onboarding_fade_likes)."""

import pytest
from fastapi.testclient import TestClient

from tests.test_serve import SVC, app_settings, rec, token, world  # noqa: F401
from twotower.serve import create_app
from twotower.users import forget

U = "onboarding-user"


@pytest.fixture
def client(world, settings):  # noqa: F811
    world.execute("INSERT INTO profiles (user_id) VALUES (%s) ON CONFLICT DO NOTHING", (U,))
    world.commit()
    with TestClient(create_app(app_settings(settings))) as c:
        yield c


def tagged(conn, tag: str, videos: list[str]) -> int:
    return conn.execute("SELECT count(DISTINCT video_id) FROM video_tags WHERE tag_name = %s AND video_id = ANY(%s)",
                        (tag, videos)).fetchone()[0]


def test_picks_steer_a_new_users_deck_until_their_first_like(client, world):  # noqa: F811
    cold = rec(client, U, 10, exclude_impressions=False).json()
    assert cold["source"] == "cold_start"
    cold_ids = [i["video_id"] for i in cold["items"]]
    # the tag the cold-start list carries least, among tags with enough videos
    tag = world.execute("SELECT t.tag_name FROM video_tags t GROUP BY 1 HAVING count(*) >= 20 "
                        "ORDER BY count(*) FILTER (WHERE t.video_id = ANY(%s)), 1 LIMIT 1", (cold_ids,)).fetchone()[0]
    r = client.post(f"/v1/users/{U}/preferences", json={"tags": [tag]}, headers=token(U))
    assert r.status_code == 200 and r.json() == {"user_id": U, "tags": [tag], "performers": [], "makers": []}
    body = rec(client, U, 10, exclude_impressions=False).json()
    assert body["source"] == "onboarding" and len(body["items"]) == 10
    picked = [i["video_id"] for i in body["items"]]
    assert all(i["reasons"] == ["your picks"] for i in body["items"])
    assert tagged(world, tag, picked) > tagged(world, tag, cold_ids) and tagged(world, tag, picked) >= 5
    sql = world.execute("SELECT video_id, source, reasons FROM public.recommend_videos(10, %s, NULL, false)", (U,)).fetchall()
    world.commit()
    assert [x[0] for x in sql] == picked and {x[1] for x in sql} == {"onboarding"} and sql[0][2] == ["your picks"]
    # a nope is not a like: still onboarding; the first like hands over to the user's own vector
    world.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type) VALUES (%s, %s, 'nope')",
                  (U, picked[-1]))
    world.commit()
    assert rec(client, U, 10, exclude_impressions=False).json()["source"] == "onboarding"
    # the first like hands over to the user's own vector, and the picks fade: ceil(10 (1 - 1/10)) =
    # 9 of the deck's cards are still the picks', marked, among the ranked ones; 4 likes: 6; 9: 1
    for likes, dealt in ((1, 9), (4, 6), (9, 1)):
        world.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type) "
                      "SELECT %s, v, 'like' FROM unnest(%s::text[]) v ON CONFLICT DO NOTHING", (U, picked[:likes]))
        world.commit()
        assert client.post(f"/v1/users/{U}/embedding", headers=SVC).status_code == 200  # (the SQL path reads it)
        body = rec(client, U, 10, exclude_impressions=False).json()
        assert body["source"] == "two_tower" and len(body["items"]) == 10
        marked = [i for i in body["items"] if i.get("source") == "onboarding"]
        assert len(marked) == dealt and all(i["reasons"] == ["your picks"] for i in marked)
        assert not any(i.get("source") == "explore" for i in body["items"])
        with world.transaction(force_rollback=True):
            sql = world.execute("SELECT video_id, source FROM public.recommend_videos(10, %s, NULL, false)", (U,)).fetchall()
        assert sql == [(i["video_id"], i.get("source", "two_tower_stored")) for i in body["items"]]
    # replaced as a whole; empty lists clear it
    r = client.post(f"/v1/users/{U}/preferences", json={}, headers=SVC)
    assert r.json() == {"user_id": U, "tags": [], "performers": [], "makers": []}


def test_preferences_endpoints_check_auth_and_bodies(client, world):  # noqa: F811
    assert client.post(f"/v1/users/{U}/preferences", json={"tags": ["x"]}).status_code == 401
    assert client.post(f"/v1/users/{U}/preferences", json={"tags": ["x"]}, headers=token("other")).status_code == 403
    assert client.get(f"/v1/users/{U}/preferences", headers=token("other")).status_code == 403
    for body in ({"tags": "x"}, {"tags": [""]}, {"tags": ["a"] * 51}, {"colours": []}, {"makers": [3]}):
        r = client.post(f"/v1/users/{U}/preferences", json=body, headers=token(U))
        assert r.status_code == 422, (body, r.text)
    r = client.post(f"/v1/users/{U}/preferences", json={"tags": ["b", "a", "a"], "makers": ["m"]}, headers=token(U))
    assert r.json() == {"user_id": U, "tags": ["a", "b"], "performers": [], "makers": ["m"]}
    assert client.get(f"/v1/users/{U}/preferences", headers=token(U)).json() == r.json()
    assert forget(world, U)["user_preferences"] == 3
    world.commit()
    assert client.get(f"/v1/users/{U}/preferences", headers=SVC).json()["tags"] == []


def test_set_preferences_from_sql_is_the_callers_own(world):  # noqa: F811
    from psycopg import errors

    from tests.test_security import acting

    with acting(world, "authenticated", U):
        got = world.execute("SELECT * FROM public.twotower_set_preferences(ARRAY['tag_001'])").fetchall()
        assert got == [("tag", "tag_001")]
        assert {r[3] for r in world.execute("SELECT * FROM public.recommend_videos(10)")} == {"onboarding"}
        with pytest.raises(errors.InsufficientPrivilege):
            world.execute("SELECT * FROM public.twotower_set_preferences(ARRAY['x'], '{}', '{}', 'someone-else')")
    world.rollback()
    with acting(world, "authenticated", U):
        with pytest.raises(errors.InvalidParameterValue):
            world.execute("SELECT * FROM public.twotower_set_preferences(ARRAY[''])")
    world.rollback()
    with acting(world, "anon", None):
        with pytest.raises(errors.InsufficientPrivilege):
            world.execute("SELECT * FROM public.twotower_set_preferences(ARRAY['x'])")
    world.rollback()
