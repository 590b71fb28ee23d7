"""MMR diversity of a deck: 0 is the plain ranking, above 0 the deck's tags spread out; the same
function (twotower.mmr) in the service and in recommend_videos; the user's own setting; its
endpoints' auth and bodies."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.test_deck import ids
from tests.test_serve import SVC, app_settings, rec, token, warm_user, world  # noqa: F401
from twotower.serve import create_app


@pytest.fixture
def client(world, settings):  # noqa: F811
    with TestClient(create_app(app_settings(settings))) as c:
        yield c


def sql_deck(conn, user, limit=10, diversity=None) -> list[str]:
    return [r[0] for r in conn.execute("SELECT video_id FROM public.recommend_videos(%s, %s, NULL, false, %s)",
                                       (limit, user, diversity)).fetchall()]


def tag_entropy(conn, videos: list[str]) -> float:
    """Entropy (bits) of the tags over a deck's videos, as metrics.diversity counts them."""
    rows = conn.execute("SELECT tag_name, count(*) FROM video_tags WHERE video_id = ANY(%s) GROUP BY 1",
                        (videos,)).fetchall()
    p = np.array([c for _, c in rows], dtype=float)
    p /= p.sum()
    return float(-(p * np.log2(p)).sum())


def alikeness(conn, videos: list[str]) -> float:
    """Mean pairwise cosine of a deck's item vectors (what MMR's diversity term lowers)."""
    return conn.execute("SELECT avg(1 - (a.embedding <=> b.embedding)) FROM twotower.video_embeddings a "
                        "JOIN twotower.video_embeddings b ON b.model_version = a.model_version AND a.video_id < b.video_id "
                        "WHERE a.model_version = 'v1' AND a.video_id = ANY(%s) AND b.video_id = ANY(%s)",
                        (videos, videos)).fetchone()[0]


def test_diversity_zero_is_the_plain_ranking_and_more_spreads_the_tags(client, world):  # noqa: F811
    u = warm_user(world)
    plain = ids(rec(client, u, 10, exclude_impressions=False))
    assert ids(rec(client, u, 10, exclude_impressions=False, diversity=0)) == plain
    assert sql_deck(world, u, 10, 0.0) == sql_deck(world, u, 10) == plain
    pool = ids(rec(client, u, 40, exclude_impressions=False))  # MMR picks from the best 4 x limit
    for d in (0.5, 0.9):
        deck = ids(rec(client, u, 10, exclude_impressions=False, diversity=d))
        assert len(deck) == 10 == len(set(deck)) and set(deck) <= set(pool) and deck[0] == plain[0]
        assert sql_deck(world, u, 10, d) == deck  # one function, every path
    # over the 40 warmest users: the decks' item vectors spread out and their tags with them
    users = [v for (v,) in world.execute("SELECT user_id FROM user_video_decisions GROUP BY 1 "
                                         "ORDER BY count(*) DESC, 1 LIMIT 40")]
    spread, entropy = {0.0: [], 0.9: []}, {0.0: [], 0.9: []}
    for user in users:
        for d in (0.0, 0.9):
            deck = ids(rec(client, user, 10, headers=SVC, exclude_impressions=False, diversity=d))
            spread[d].append(alikeness(world, deck))
            entropy[d].append(tag_entropy(world, deck))
    assert np.mean(spread[0.9]) < np.mean(spread[0.0]), spread
    # tags: 4.26 -> 4.41 bits here; over vectors alone (before the tags term) it did not move
    assert np.mean(entropy[0.9]) > np.mean(entropy[0.0]) + 0.05, entropy
    # every card still passes the filters: nothing decided comes back
    decided = {v for (v,) in world.execute("SELECT video_id FROM user_video_decisions WHERE user_id = %s", (u,))}
    assert not decided & set(ids(rec(client, u, 30, exclude_impressions=False, diversity=1)))


def test_mmr_in_sql_is_greedy_and_keeps_scores(world):  # noqa: F811
    vids = [v for (v,) in world.execute("SELECT video_id FROM twotower.video_embeddings WHERE model_version = 'v1' "
                                        "ORDER BY video_id LIMIT 6")]
    scores = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    out = world.execute("SELECT video_id, score, ord FROM twotower.mmr('v1', %s, %s, 4, 0)", (vids, scores)).fetchall()
    assert out == [(v, s, i + 1) for i, (v, s) in enumerate(zip(vids[:4], scores[:4], strict=True))]
    # a duplicate of the best card, ranked second, is the last pick once diversity counts fully
    dup = [vids[0], vids[0], *vids[1:5]]
    picks = [r[0] for r in world.execute("SELECT video_id FROM twotower.mmr('v1', %s, %s, 6, 1) ORDER BY ord",
                                         (dup, scores))]
    assert picks[0] == picks[-1] == vids[0] and sorted(picks[1:-1]) == sorted(vids[1:5])
    plain = [r[0] for r in world.execute("SELECT video_id FROM twotower.mmr('v1', %s, %s, 6, 0) ORDER BY ord",
                                         (dup, scores))]
    assert plain == dup
    assert world.execute("SELECT count(*) FROM twotower.mmr('v1', '{}', '{}', 10, 0.5)").fetchone()[0] == 0


def test_the_users_setting_applies_when_the_request_names_none(client, world):  # noqa: F811
    u = warm_user(world)
    assert client.get(f"/v1/users/{u}/settings", headers=token(u)).json() == {"user_id": u, "diversity": None}
    r = client.put(f"/v1/users/{u}/settings", json={"diversity": 0.9}, headers=token(u))
    assert r.status_code == 200 and r.json() == {"user_id": u, "diversity": 0.9}
    chosen = ids(rec(client, u, 10, exclude_impressions=False, diversity=0.9))
    assert ids(rec(client, u, 10, exclude_impressions=False)) == chosen
    assert sql_deck(world, u, 10) == chosen
    assert ids(rec(client, u, 10, exclude_impressions=False, diversity=0)) != chosen  # the request wins
    assert client.put(f"/v1/users/{u}/settings", json={"diversity": None}, headers=token(u)).json()["diversity"] is None
    plain = ids(rec(client, u, 10, exclude_impressions=False, diversity=0))
    assert ids(rec(client, u, 10, exclude_impressions=False)) == plain
    # the installation's default (serving.diversity, written by db init) comes last
    world.execute("UPDATE twotower.settings SET value = '0.9' WHERE key = 'diversity'")
    world.commit()
    assert ids(rec(client, u, 10, exclude_impressions=False)) == chosen


def test_settings_endpoints_check_auth_and_bodies(client, world):  # noqa: F811
    u = warm_user(world)
    assert client.put(f"/v1/users/{u}/settings", json={"diversity": 0.5}).status_code == 401
    assert client.put(f"/v1/users/{u}/settings", json={"diversity": 0.5}, headers=token("other")).status_code == 403
    assert client.get(f"/v1/users/{u}/settings", headers=token("other")).status_code == 403
    assert client.put(f"/v1/users/{u}/settings", json={"diversity": 0.5}, headers=SVC).status_code == 200
    for body in ({"diversity": 1.5}, {"diversity": -0.1}, {"diversity": "0.5"}, {"diversity": True},
                 {"diversity": 0.5, "extra": 1}):
        r = client.put(f"/v1/users/{u}/settings", json=body, headers=token(u))
        assert r.status_code == 422, (body, r.text)
    for bad in (1.5, "x", False):
        assert rec(client, u, 10, diversity=bad).status_code == 422
    assert client.get(f"/v1/users/{u}/settings", headers=token(u)).json()["diversity"] == 0.5


def test_set_diversity_from_sql_is_the_callers_own(world):  # noqa: F811
    from psycopg import errors

    from tests.test_security import acting

    u = warm_user(world)
    with acting(world, "authenticated", u):
        assert world.execute("SELECT public.twotower_set_diversity(0.4)").fetchone()[0] == 0.4
        assert len(world.execute("SELECT * FROM public.recommend_videos(10)").fetchall()) == 10
        with pytest.raises(errors.InsufficientPrivilege):
            world.execute("SELECT public.twotower_set_diversity(0.4, 'someone-else')")
    world.rollback()
    with acting(world, "authenticated", u):
        with pytest.raises(errors.InvalidParameterValue):
            world.execute("SELECT public.twotower_set_diversity(2)")
    world.rollback()
    with acting(world, "authenticated", u):
        with pytest.raises(errors.InvalidParameterValue):
            world.execute("SELECT * FROM public.recommend_videos(10, NULL, NULL, true, 1.5)")
    world.rollback()
    with acting(world, "anon", None):
        with pytest.raises(errors.InsufficientPrivilege):
            world.execute("SELECT public.twotower_set_diversity(0.4)")
    world.rollback()
    world.execute("SELECT public.twotower_set_diversity(0.4, %s)", (u,))  # the owner (or service role) names the user
    assert world.execute("SELECT diversity FROM twotower.user_settings WHERE user_id = %s", (u,)).fetchone() == (0.4,)


def test_nope_weight_demotes_what_is_close_to_recent_nopes(client, world):  # noqa: F811
    u = warm_user(world)
    plain = ids(rec(client, u, 10, exclude_impressions=False))
    noped = plain[1]
    world.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type) VALUES (%s, %s, 'nope')", (u, noped))
    world.commit()
    assert client.post(f"/v1/users/{u}/embedding", headers=token(u)).status_code == 200  # SQL reads the stored vector

    def closeness(deck: list[str]) -> float:  # as the re-rank counts it: cosines floored at 0
        return world.execute("SELECT avg(greatest(1 - (e.embedding <=> z.embedding), 0)) FROM twotower.video_embeddings e "
                             "JOIN twotower.video_embeddings z ON z.model_version = e.model_version AND z.video_id = %s "
                             "WHERE e.model_version = 'v1' AND e.video_id = ANY(%s)", (noped, deck)).fetchone()[0]

    before = ids(rec(client, u, 10, exclude_impressions=False))
    assert noped not in before and sql_deck(world, u, 10) == before  # weight 0 (the default): the plain ranking
    # a weight that outweighs relevance: the deck is the pool's 10 least nope-like cards, so it
    # cannot be closer to the nope than the plain top 10 (which is part of that pool)
    world.execute("UPDATE twotower.settings SET value = '100' WHERE key = 'nope_weight'")
    world.commit()
    after = ids(rec(client, u, 10, exclude_impressions=False))
    assert after != before and len(after) == 10 and noped not in after
    assert closeness(after) <= closeness(before)
    assert sql_deck(world, u, 10) == after  # the same re-rank in SQL
    world.execute("UPDATE twotower.settings SET value = '0' WHERE key = 'nope_weight'")
    world.commit()
