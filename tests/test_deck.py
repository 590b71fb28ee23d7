"""The swipe deck: impressions (not re-served within the TTL, the deck stays full, then the oldest
come back), deck paging, and mutes, in the service and in recommend_videos alike."""

import time

import pytest
from fastapi.testclient import TestClient

from tests.test_serve import SVC, app_settings, rec, token, warm_user, world  # noqa: F401
from twotower.serve import create_app


@pytest.fixture
def client(world, settings):  # noqa: F811
    with TestClient(create_app(app_settings(settings))) as c:
        yield c


def ids(r) -> list[str]:
    assert r.status_code == 200, r.text
    return [i["video_id"] for i in r.json()["items"]]


def flushed(conn, user: str, n: int) -> None:
    """Wait for the service's log flush (once a second) to write the user's impressions."""
    for _ in range(50):
        got = conn.execute("SELECT count(*) FROM twotower.impressions WHERE user_id = %s", (user,)).fetchone()[0]
        conn.commit()  # a fresh snapshot next time
        if got >= n:
            return
        time.sleep(0.1)
    raise AssertionError("impressions were not written")


def rpc(conn, user, limit=10, deck=None, impressions=True) -> list[tuple]:
    return conn.execute("SELECT video_id, source, reasons FROM public.recommend_videos(%s, %s, %s, %s)",
                        (limit, user, deck, impressions)).fetchall()


def test_served_cards_are_not_served_again_within_the_ttl(client, world):  # noqa: F811
    u = warm_user(world)
    first = ids(rec(client, u, 10))
    second = ids(rec(client, u, 10))  # at once: the impressions are still queued in memory
    assert len(first) == len(second) == 10 and not set(first) & set(second)
    assert ids(rec(client, u, 10, exclude_impressions=False)) == first  # off per request: the plain ranking
    flushed(world, u, 20)
    # recommend_videos sees the service's impressions, and the service sees its own
    sql = [r[0] for r in rpc(world, u, 10)]
    assert len(sql) == 10 and not set(sql) & set(first + second)
    assert not set(ids(rec(client, u, 10))) & set(first + second + sql)
    times = dict(world.execute("SELECT video_id, times_served FROM twotower.impressions WHERE user_id = %s", (u,)).fetchall())
    assert all(times[v] == 2 for v in first) and all(times[v] == 1 for v in second)
    # past the TTL (a day by default) a card may come back (discounted for each serving: its own
    # test is tests/test_deck_discount.py): the deck is full and some of those cards are back
    world.execute("UPDATE twotower.impressions SET last_served_at = now() - interval '2 days' WHERE user_id = %s", (u,))
    world.commit()
    back = ids(rec(client, u, 10))
    assert len(back) == 10 and set(back) & set(first)


def test_an_exhausted_deck_stays_full_with_the_oldest_impressions(client, world):  # noqa: F811
    u = warm_user(world)
    undecided = world.execute("SELECT count(*) FROM videos v WHERE NOT EXISTS (SELECT 1 FROM user_video_decisions d "
                              "WHERE d.user_id = %s AND d.video_id = v.id)", (u,)).fetchone()[0]
    assert 200 < undecided < 300
    served: list[str] = []
    for _ in range(2):
        got = [r[0] for r in rpc(world, u, 100)]
        assert len(got) == 100 and not set(got) & set(served)
        served += got
        world.commit()
    last = rpc(world, u, 100)  # what is left, then the oldest impressions, oldest first
    fresh = undecided - 200
    assert len(last) == 100 and not {r[0] for r in last[:fresh]} & set(served)
    # the first deck's cards share one time (ties by id)
    assert [r[0] for r in last[fresh:]] == sorted(served[:100])[:100 - fresh] and all(r[2] == ["seen before"] for r in last[fresh:])
    world.execute("UPDATE twotower.impressions SET last_served_at = now() WHERE user_id = %s", (u,))
    world.commit()
    assert len(ids(rec(client, u, 25))) == 25  # the service falls back the same way
    r = rec(client, u, 25).json()["items"]
    assert len(r) == 25 and {"seen before"} == {x["reasons"][0] for x in r}


def test_a_deck_never_repeats_its_cards(client, world):  # noqa: F811
    u = warm_user(world)
    pages = [ids(rec(client, u, 10, deck_id="d1", exclude_impressions=False)) for _ in range(3)]
    flat = [v for p in pages for v in p]
    assert len(flat) == 30 == len(set(flat))
    flushed(world, u, 30)
    page = [r[0] for r in rpc(world, u, 10, deck="d1", impressions=False)]  # the same deck in SQL
    assert len(page) == 10 and not set(page) & set(flat)
    assert ids(rec(client, u, 10, deck_id="d2", exclude_impressions=False)) == pages[0]  # a new deck starts over


def test_mutes_remove_matching_videos_in_every_path(client, world):  # noqa: F811
    u = warm_user(world)
    top = rec(client, u, 30, exclude_impressions=False).json()["items"]
    tag = next(r.split(":", 1)[1] for i in top for r in i["reasons"] if r.startswith("tag:"))
    video = top[0]["video_id"]
    maker = world.execute("SELECT maker FROM videos WHERE id = %s", (top[1]["video_id"],)).fetchone()[0]
    for kind, value in (("tag", tag), ("video", video), ("maker", maker)):
        r = client.post(f"/v1/users/{u}/mutes", json={"kind": kind, "value": value}, headers=token(u))
        assert r.status_code == 200, r.text
    assert {(m["kind"], m["value"]) for m in r.json()["mutes"]} == {("tag", tag), ("video", video), ("maker", maker)}
    hidden = {v for (v,) in world.execute(
        "SELECT v.id FROM videos v WHERE v.id = %s OR v.maker = %s OR EXISTS (SELECT 1 FROM video_tags t "
        "WHERE t.video_id = v.id AND t.tag_name = %s)", (video, maker, tag))}
    assert len(hidden) > 5
    for _ in range(3):  # a full catalogue's worth of decks, in both paths
        got = ids(rec(client, u, 100, exclude_impressions=False)) + [r[0] for r in rpc(world, u, 100, impressions=False)]
        assert got and not hidden & set(got)
    world.execute("INSERT INTO profiles (user_id) VALUES ('cold-muter') ON CONFLICT DO NOTHING")
    world.commit()
    client.post("/v1/users/cold-muter/mutes", json={"kind": "tag", "value": tag}, headers=SVC)
    cold = rec(client, "cold-muter", 50, headers=SVC).json()
    assert cold["source"] == "cold_start" and len(cold["items"]) == 50
    tagged = {v for (v,) in world.execute("SELECT video_id FROM video_tags WHERE tag_name = %s", (tag,))}
    assert not tagged & {i["video_id"] for i in cold["items"]}
    # unmute: back in the ranking
    for kind, value in (("tag", tag), ("video", video), ("maker", maker)):
        r = client.request("DELETE", f"/v1/users/{u}/mutes", json={"kind": kind, "value": value}, headers=token(u))
        assert r.status_code == 200 and (kind, value) not in {(m["kind"], m["value"]) for m in r.json()["mutes"]}
    assert r.json()["mutes"] == []
    assert video in ids(rec(client, u, 30, exclude_impressions=False))


def test_mute_endpoints_check_auth_and_bodies(client, world):  # noqa: F811
    u = warm_user(world)
    assert client.post(f"/v1/users/{u}/mutes", json={"kind": "tag", "value": "x"}).status_code == 401
    assert client.post(f"/v1/users/{u}/mutes", json={"kind": "tag", "value": "x"}, headers=token("other")).status_code == 403
    assert client.get(f"/v1/users/{u}/mutes", headers=token("other")).status_code == 403
    for body in ({"kind": "colour", "value": "x"}, {"kind": "tag"}, {"kind": "tag", "value": ""},
                 {"kind": "tag", "value": "x", "extra": 1}, {"kind": "tag", "value": 3}):
        r = client.post(f"/v1/users/{u}/mutes", json=body, headers=token(u))
        assert r.status_code == 422, (body, r.text)
    assert client.get(f"/v1/users/{u}/mutes", headers=token(u)).json() == {"user_id": u, "mutes": []}


def test_twotower_mute_from_sql_is_the_callers_own(world):  # noqa: F811
    from psycopg import errors

    from tests.test_security import acting

    u = warm_user(world)
    with acting(world, "authenticated", u):
        assert world.execute("SELECT * FROM public.twotower_mute('tag', 'tag_001')").fetchall() == [("tag", "tag_001")]
        with pytest.raises(errors.InsufficientPrivilege):
            world.execute("SELECT * FROM public.twotower_mute('tag', 'x', true, 'someone-else')")
    world.rollback()
    with acting(world, "authenticated", u):
        with pytest.raises(errors.InvalidParameterValue):
            world.execute("SELECT * FROM public.twotower_mute('colour', 'x')")
    world.rollback()
    with acting(world, "anon", None):
        with pytest.raises(errors.InsufficientPrivilege):
            world.execute("SELECT * FROM public.twotower_mute('tag', 'x')")
    world.rollback()


def test_deletion_removes_impressions_and_mutes(client, world):  # noqa: F811
    u = warm_user(world)
    ids(rec(client, u, 10))
    client.post(f"/v1/users/{u}/mutes", json={"kind": "tag", "value": "tag_001"}, headers=token(u))
    flushed(world, u, 10)
    r = client.delete(f"/v1/users/{u}", headers=token(u))
    assert r.status_code == 200 and r.json()["deleted"]["impressions"] == 10 and r.json()["deleted"]["user_mutes"] == 1
    for t in ("impressions", "user_mutes"):
        assert world.execute(f"SELECT count(*) FROM twotower.{t} WHERE user_id = %s", (u,)).fetchone()[0] == 0
