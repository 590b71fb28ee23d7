"""Impression discounting and mutes as a ranking signal: a card served again after the TTL,
still unanswered, is worth (1 - discount) less for each earlier serving; what looks like a muted
video is pushed down. Both in twotower.mmr, so the service and recommend_videos agree."""

import time

import pytest
from fastapi.testclient import TestClient

from tests.test_deck import ids, rpc
from tests.test_serve import app_settings, rec, token, warm_user, world  # noqa: F401
from twotower.serve import create_app


@pytest.fixture
def client(world, settings):  # noqa: F811
    with TestClient(create_app(app_settings(settings))) as c:
        yield c


def setting(conn, key: str, value: float) -> None:
    conn.execute("UPDATE twotower.settings SET value = %s WHERE key = %s", (str(value), key))
    conn.commit()


def served(conn, user: str, total: int) -> None:
    """Wait for the service's log flush to count `total` servings of the user's cards."""
    for _ in range(50):
        got = conn.execute("SELECT coalesce(sum(times_served), 0) FROM twotower.impressions WHERE user_id = %s",
                           (user,)).fetchone()[0]
        conn.commit()
        if got >= total:
            return
        time.sleep(0.1)
    raise AssertionError(f"{got} servings written, not {total}")


def age(conn, user: str) -> None:
    conn.execute("UPDATE twotower.impressions SET last_served_at = now() - interval '2 days' WHERE user_id = %s", (user,))
    conn.commit()


def sql_then_service(client, conn, user: str) -> list[str]:
    """The deck from recommend_videos (rolled back: it remembers what it serves) and from the
    service, which must be the same."""
    with conn.transaction(force_rollback=True):
        sql = [r[0] for r in rpc(conn, user, 10)]
    deck = ids(rec(client, user, 10))
    assert sql == deck
    return deck


def test_stale_unanswered_cards_come_back_discounted(client, world):  # noqa: F811
    u = warm_user(world)
    assert client.post(f"/v1/users/{u}/embedding", headers=token(u)).status_code == 200  # SQL reads the stored vector
    try:
        setting(world, "impression_discount", 0)
        first = ids(rec(client, u, 10))
        second = ids(rec(client, u, 10))  # the next ten of the plain ranking (the first are hidden)
        served(world, u, 20)
        world.execute("DELETE FROM twotower.impressions WHERE user_id = %s AND video_id = ANY(%s)", (u, second))
        age(world, u)
        assert sql_then_service(client, world, u) == first  # no discount: past the TTL the same cards return
        served(world, u, 20)
        age(world, u)  # the first ten were now served twice, unanswered
        setting(world, "impression_discount", 1)  # the most: a stale card is worth nothing
        assert sql_then_service(client, world, u) == second
        served(world, u, 30)
        age(world, u)
        setting(world, "impression_discount", 0.5)  # in between, both paths alike
        mixed = sql_then_service(client, world, u)
        assert len(mixed) == 10 and mixed != first
        # off per request (exclude_impressions: false) there is no discount either
        assert ids(rec(client, u, 10, exclude_impressions=False)) == first
    finally:
        setting(world, "impression_discount", 0.5)


def test_a_user_without_stale_cards_gets_the_plain_ranking(client, world):  # noqa: F811
    u = warm_user(world)
    assert client.post(f"/v1/users/{u}/embedding", headers=token(u)).status_code == 200  # SQL reads the stored vector
    world.execute("DELETE FROM twotower.impressions WHERE user_id = %s", (u,))
    world.commit()
    assert world.execute("SELECT stale FROM twotower.deck_hidden(%s)", (u,)).fetchone()[0] is False
    with world.transaction(force_rollback=True):  # the plain ranking, impressions off
        plain = [r[0] for r in rpc(world, u, 10, impressions=False)]
    assert ids(rec(client, u, 10)) == plain  # the discount (on by default) has nothing to do


def test_muting_a_video_pushes_down_what_looks_like_it(client, world):  # noqa: F811
    u = warm_user(world)
    assert client.post(f"/v1/users/{u}/embedding", headers=token(u)).status_code == 200  # SQL reads the stored vector
    plain = ids(rec(client, u, 10, exclude_impressions=False))
    muted = plain[0]

    def closeness(deck: list[str]) -> float:  # as the re-rank counts it: cosines floored at 0
        return world.execute("SELECT avg(greatest(1 - (e.embedding <=> z.embedding), 0)) FROM twotower.video_embeddings e "
                             "JOIN twotower.video_embeddings z ON z.model_version = e.model_version AND z.video_id = %s "
                             "WHERE e.model_version = 'v1' AND e.video_id = ANY(%s)", (muted, deck)).fetchone()[0]

    try:
        setting(world, "mute_weight", 0)
        assert client.post(f"/v1/users/{u}/mutes", json={"kind": "video", "value": muted}, headers=token(u)).status_code == 200
        filtered = ids(rec(client, u, 10, exclude_impressions=False))
        assert muted not in filtered and filtered == [v for v in plain if v != muted] + filtered[9:]  # the filter alone
        setting(world, "mute_weight", 100)  # outweighs relevance: the pool's 10 least like the muted video
        pushed = ids(rec(client, u, 10, exclude_impressions=False))
        assert muted not in pushed and pushed != filtered and closeness(pushed) <= closeness(filtered)
        with world.transaction(force_rollback=True):
            sql = [r[0] for r in world.execute("SELECT video_id FROM public.recommend_videos(10, %s, NULL, false)",
                                               (u,)).fetchall()]
        assert sql == pushed  # the same signal in SQL
    finally:
        setting(world, "mute_weight", 0.5)
        client.request("DELETE", f"/v1/users/{u}/mutes", json={"kind": "video", "value": muted}, headers=token(u))
