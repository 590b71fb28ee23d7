"""Contract tests for the HTTP API: a real database, a real model trained on synthetic data."""

import time

import jwt
import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.helpers import exported, load_world
from twotower import embed, registry
from twotower.config import EmbeddingConfig, Settings
from twotower.export import load_artifacts
from twotower.serve import create_app
from twotower.serve.schemas import RecommendationResponse

SECRET = "test-secret-please-change-it-now-32b+"
SERVICE = "service-key-123"


def token(sub: str, exp_in: int = 3600, secret: str = SECRET, **claims) -> dict:
    """A user token as Supabase issues it (aud "authenticated")."""
    claims = {"sub": sub, "exp": int(time.time()) + exp_in, "aud": "authenticated", "role": "authenticated", **claims}
    t = jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")
    return {"Authorization": f"Bearer {t}"}


SVC = {"Authorization": f"Bearer {SERVICE}"}


def setup_model(conn, settings, tmp_path, version="v1", activate=True, extra=None):
    folder = exported(conn, settings, tmp_path / version, version, extra=extra)
    registry.register(conn, folder, settings.path("artifacts"))
    art = load_artifacts(settings.path("artifacts") / version)
    embed.embed_videos(conn, art, EmbeddingConfig())
    embed.embed_all_users(conn, art)
    if activate:
        registry.activate(conn, version)
    return art


@pytest.fixture
def world(conn, settings, tmp_path):
    load_world(conn)
    setup_model(conn, settings, tmp_path)
    return conn


def app_settings(settings: Settings, **kw) -> Settings:
    return Settings(DATABASE_URL=settings.database_url, TWOTOWER_HOME=settings.home,
                    TWOTOWER_JWT_SECRET=SECRET, TWOTOWER_SERVICE_KEY=SERVICE, **kw)


@pytest.fixture
def client(world, settings):
    with TestClient(create_app(app_settings(settings))) as c:
        yield c


def warm_user(conn) -> str:
    return conn.execute("SELECT user_id FROM user_video_decisions GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1").fetchone()[0]


def rec(client, user, limit=10, headers=None, **body):
    return client.post("/v1/recommendations", json={"user_id": user, "limit": limit, **body},
                       headers=headers if headers is not None else token(user))


def test_recommendations_exclude_decided_and_have_reasons(client, world):
    u = warm_user(world)
    r = rec(client, u, 15)
    assert r.status_code == 200, r.text
    body = r.json()
    RecommendationResponse.model_validate(body)  # the documented shape, though sent without re-validation
    assert body["source"] == "two_tower" and body["model_version"] == "v1" and len(body["items"]) == 15
    decided = {v for (v,) in world.execute("SELECT video_id FROM user_video_decisions WHERE user_id=%s", (u,))}
    assert not decided & {i["video_id"] for i in body["items"]}
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert any(i["reasons"] for i in body["items"])
    assert body["took_ms"] > 0


def test_auth_matrix(client, world):
    u = warm_user(world)
    other = world.execute("SELECT user_id FROM profiles WHERE user_id <> %s LIMIT 1", (u,)).fetchone()[0]
    assert rec(client, u, headers={}).status_code == 401
    assert rec(client, u, headers=token(u, secret="a-different-secret-of-the-same-length!")).status_code == 401
    assert rec(client, u, headers=token(u, exp_in=-10)).status_code == 401
    assert rec(client, u, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    t = token(u, exp_in=2)  # verified once, then served from the cache until its own expiry
    assert rec(client, u, headers=t).status_code == 200 and rec(client, u, headers=t).status_code == 200
    time.sleep(2.1)
    assert rec(client, u, headers=t).status_code == 401
    assert rec(client, other, headers=token(u)).status_code == 403
    assert rec(client, other, headers=SVC).status_code == 200
    assert rec(client, other, headers=token("anyone", role="service_role")).status_code == 200
    assert client.post(f"/v1/users/{other}/embedding", headers=token(u)).status_code == 403
    d = {"user_id": other, "video_id": "v000", "decision_type": "like"}
    assert client.post("/v1/decisions", json=d, headers=token(u)).status_code == 403


def test_nearly_exhausted_user_still_gets_limit_items(client, world):
    u = warm_user(world)
    top = [i["video_id"] for i in rec(client, u, 100).json()["items"]]
    top += [i["video_id"] for i in rec(client, u, 100, headers=SVC).json()["items"] if i["video_id"] not in top]
    with world.cursor() as cur:  # decide (nope) nearly every video the model ranks highest
        cur.executemany("INSERT INTO user_video_decisions (user_id, video_id, decision_type) VALUES (%s, %s, 'nope')"
                        " ON CONFLICT DO NOTHING", [(u, v) for v in top])
    undecided = world.execute("SELECT count(*) FROM videos v WHERE NOT EXISTS (SELECT 1 FROM user_video_decisions d"
                              " WHERE d.user_id=%s AND d.video_id=v.id)", (u,)).fetchone()[0]
    r = rec(client, u, 30).json()
    decided = {v for (v,) in world.execute("SELECT video_id FROM user_video_decisions WHERE user_id=%s", (u,))}
    assert len(r["items"]) == min(30, undecided)
    assert not decided & {i["video_id"] for i in r["items"]}


def test_cold_start_user(client, world):
    world.execute("INSERT INTO profiles (user_id) VALUES ('newbie')")
    r = rec(client, "newbie", 10).json()
    RecommendationResponse.model_validate(r)
    assert r["source"] == "cold_start" and len(r["items"]) == 10
    r2 = rec(client, "never-seen-anywhere", 5).json()
    assert r2["source"] == "cold_start" and len(r2["items"]) == 5


def test_a_decision_changes_the_next_recommendation(client, world):
    u = warm_user(world)
    before = rec(client, u, 10).json()["items"]
    first = before[0]["video_id"]
    r = client.post("/v1/decisions", json={"user_id": u, "video_id": first, "decision_type": "like"}, headers=token(u))
    assert r.status_code == 200 and r.json()["embedding_refreshed"] == ["v1"]
    after = rec(client, u, 10).json()["items"]
    assert first not in {i["video_id"] for i in after}
    assert [i["video_id"] for i in after] != [i["video_id"] for i in before]
    # idempotent on the pair; the latest answer wins
    client.post("/v1/decisions", json={"user_id": u, "video_id": first, "decision_type": "nope"}, headers=token(u))
    rows = world.execute("SELECT decision_type FROM user_video_decisions WHERE user_id=%s AND video_id=%s", (u, first)).fetchall()
    assert rows == [("nope",)]
    # a brand-new user's first like turns them from cold start into a two-tower user
    client.post("/v1/decisions", json={"user_id": "fresh", "video_id": first, "decision_type": "like"}, headers=SVC)
    assert rec(client, "fresh", 5, headers=SVC).json()["source"] == "two_tower"


def test_user_embedding_endpoint(client, world):
    u = warm_user(world)
    before = world.execute("SELECT last_updated FROM user_embeddings WHERE user_id=%s", (u,)).fetchone()[0]
    r = client.post(f"/v1/users/{u}/embedding", headers=token(u))
    assert r.status_code == 200 and r.json()["versions"] == ["v1"]
    after = world.execute("SELECT last_updated FROM user_embeddings WHERE user_id=%s", (u,)).fetchone()[0]
    assert after > before
    assert client.post("/v1/users/ghost/embedding", headers=SVC).status_code == 404


@pytest.mark.parametrize("body,where", [
    ({"user_id": 5}, "user_id"),
    ({"user_id": "u", "limit": 0}, "limit"),
    ({"user_id": "u", "limit": 101}, "limit"),
    ({"user_id": "u", "limit": "many"}, "limit"),
    ({"user_id": "u", "surprise": 1}, "surprise"),
    ({"user_id": "x" * 200}, "user_id"),
    ({"user_id": "a\u0000b"}, "user_id"),
    ({}, "user_id"),
])
def test_malformed_bodies_are_422(client, body, where):
    r = client.post("/v1/recommendations", json=body, headers=SVC)
    assert r.status_code == 422 and where in r.json()["detail"]


def test_decision_validation(client, world):
    bad = client.post("/v1/decisions", json={"user_id": "u", "video_id": "v000", "decision_type": "love"}, headers=SVC)
    assert bad.status_code == 422
    unknown = client.post("/v1/decisions", json={"user_id": "u", "video_id": "nope", "decision_type": "like"}, headers=SVC)
    assert unknown.status_code == 404 and "unknown video" in unknown.json()["detail"]
    form = client.post("/v1/recommendations", content="user_id=u", headers=SVC)
    assert form.status_code == 422 and "JSON object" in form.json()["detail"]


def test_health_metrics_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"] == ["v1"]
    m = client.get("/metrics").text
    assert "twotower_request_seconds_bucket" in m and 'twotower_model_traffic_share{version="v1"} 1.0' in m
    assert "twotower_db_pool_connections" in m
    docs = client.get("/docs")
    import re

    assert docs.status_code == 200 and not re.search(r'(?:src|href)="https?://', docs.text)  # no CDN: works offline

    for asset in re.findall(r'(?:src|href)="(/docs-assets/[^"]+)"', docs.text):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert client.get("/openapi.json").json()["components"]["securitySchemes"]  # "Authorize" works
    assert "/v1/recommendations" in client.get("/openapi.json").json()["paths"]


def test_ab_assignment_is_stable_follows_shares_and_is_logged(world, settings, tmp_path):
    setup_model(world, settings, tmp_path, "v2", activate=False)
    registry.set_traffic(world, {"v1": 0.7, "v2": 0.3})
    with TestClient(create_app(app_settings(settings))) as c:
        state = c.app.state.service
        users = [f"user-{i}" for i in range(4000)]
        first = [state.assign(u) for u in users]
        assert first == [state.assign(u) for u in users]  # stable
        share_v2 = first.count("v2") / len(users)
        assert abs(share_v2 - 0.3) < 0.03
        u = warm_user(world)
        got = rec(c, u, 5).json()["model_version"]
        assert got == state.assign(u)
    # the served version is logged (flushed off the request path, at the latest on shutdown)
    logged = world.execute("SELECT model_version, cardinality(video_ids) FROM recommendation_log WHERE user_id=%s",
                           (u,)).fetchall()
    assert logged == [(got, 5)]


def test_database_down_falls_back_and_recovers(world, settings, admin_url, db_url):
    name = db_url.split("?")[0].rsplit("/", 1)[1]
    with TestClient(create_app(app_settings(settings))) as c:
        u = warm_user(world)
        assert rec(c, u, 5).json()["source"] == "two_tower"
        world.close()
        with psycopg.connect(admin_url, autocommit=True) as a:  # take the database away
            a.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            a.execute(f"ALTER DATABASE {name} RENAME TO {name}_off")
        try:
            r = rec(c, u, 5)
            assert r.status_code == 200 and r.json()["source"] == "fallback" and len(r.json()["items"]) == 5
            RecommendationResponse.model_validate(r.json())
            deadline = time.time() + 10
            while c.get("/readyz").status_code != 503 and time.time() < deadline:
                time.sleep(0.2)
            assert c.get("/readyz").status_code == 503
        finally:
            with psycopg.connect(admin_url, autocommit=True) as a:
                a.execute(f"ALTER DATABASE {name}_off RENAME TO {name}")
        deadline = time.time() + 15
        while c.get("/readyz").status_code != 200 and time.time() < deadline:
            time.sleep(0.3)
        assert c.get("/readyz").status_code == 200
        assert rec(c, u, 5).json()["source"] == "two_tower"  # recovered without a restart


def test_auth_disabled_and_misconfigured(world, settings):
    with pytest.raises(ValueError, match="TWOTOWER_JWT_SECRET"):
        create_app(Settings(DATABASE_URL=settings.database_url, TWOTOWER_HOME=settings.home))
    with TestClient(create_app(Settings(DATABASE_URL=settings.database_url, TWOTOWER_HOME=settings.home,
                                        TWOTOWER_AUTH_ENABLED=False))) as c:
        assert rec(c, warm_user(world), 3, headers={}).status_code == 200


def test_item_vectors_match_between_paths(world, settings):
    art = load_artifacts(settings.path("artifacts") / "v1")
    ids = [v for (v,) in world.execute("SELECT id FROM videos ORDER BY id LIMIT 20")]
    stored = {v: e.to_numpy() for v, e in world.execute(
        "SELECT video_id, embedding FROM video_embeddings WHERE video_id = ANY(%s)", (ids,))}
    online = embed.item_vectors_online(world, art, ids)
    for k, v in enumerate(ids):
        np.testing.assert_allclose(online[k], stored[v], atol=1e-5)


def test_online_metrics_join_served_lists_with_later_decisions(client, world):
    from twotower.evaluate.online import online_metrics

    u = warm_user(world)
    items = [i["video_id"] for i in rec(client, u, 5).json()["items"]]
    client.post("/v1/decisions", json={"user_id": u, "video_id": items[0], "decision_type": "like"}, headers=token(u))
    client.post("/v1/decisions", json={"user_id": u, "video_id": items[1], "decision_type": "nope"}, headers=token(u))
    deadline = time.time() + 10
    while not world.execute("SELECT 1 FROM recommendation_log").fetchone() and time.time() < deadline:
        time.sleep(0.2)  # the log is written off the request path, about once a second
    m = {r.version: r for r in online_metrics(world)}["v1"]
    assert (m.lists, m.shown, m.answered, m.liked) == (1, 5, 2, 1)
    assert m.ctr == 0.4 and m.like_rate == 0.5


def test_stale_or_missing_stored_vector_is_computed_on_the_fly(client, world):
    """Decisions written straight to the database (the app's own client, not our API): the stored
    vector is older than the last decision, so the service computes the vector itself."""
    u = warm_user(world)
    first = rec(client, u, 10).json()["items"][0]["video_id"]
    world.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type, created_at) "
                  "VALUES (%s, %s, 'like', now() + interval '1 second') "
                  "ON CONFLICT (user_id, video_id) DO UPDATE SET decision_type = 'like', created_at = excluded.created_at",
                  (u, first))
    r = rec(client, u, 10).json()
    assert r["source"] == "two_tower" and len(r["items"]) == 10 and first not in {i["video_id"] for i in r["items"]}
    world.execute("INSERT INTO profiles (user_id) VALUES ('direct') ON CONFLICT DO NOTHING")
    world.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type) VALUES ('direct', %s, 'like')",
                  (first,))
    r = rec(client, "direct", 5, headers=SVC).json()
    assert r["source"] == "two_tower" and len(r["items"]) == 5 and first not in {i["video_id"] for i in r["items"]}


def test_logged_video_ids_survive_copy(conn):
    from twotower.serve.state import text_array

    tricky = ['plain', 'with "quotes"', 'back\\slash', 'comma,brace{}', ' spaced ', 'NULL', 'tab\tnew\nline', 'ünï']
    conn.execute("CREATE TEMP TABLE t (a text[])")
    with conn.cursor() as cur, cur.copy("COPY t (a) FROM STDIN") as cp:
        cp.write_row((text_array(tricky),))
        cp.write_row((text_array([]),))
    assert [r[0] for r in conn.execute("SELECT a FROM t")] == [tricky, []]


def test_impressions_literals_survive_the_flush_statement(conn):
    """The log flush sends the impressions as array literals (state.text_array), cast in SQL:
    every id and a missing deck must come back as they were."""
    from datetime import UTC, datetime

    from twotower.db import sql
    from twotower.serve.state import text_array

    tricky = ['plain', 'with "quotes"', 'back\\slash', 'comma,brace{}', ' spaced ', 'NULL', 'tab\tnew\nline', 'ünï']
    at = datetime(2026, 12, 5, 12, 0, 1, 123456, tzinfo=UTC)
    conn.execute("SET search_path = twotower, public")
    conn.execute(sql("serve_impressions"), {
        "users": text_array(["u1"] * len(tricky)), "videos": text_array(tricky),
        "times": text_array([at.isoformat()] * len(tricky)),
        "decks": text_array([None] * (len(tricky) - 1) + ["deck \"7\""])})
    rows = conn.execute("SELECT video_id, last_served_at, times_served, deck_id FROM impressions "
                        "WHERE user_id = 'u1' ORDER BY video_id").fetchall()
    assert sorted(r[0] for r in rows) == sorted(tricky)
    assert {(r[1], r[2]) for r in rows} == {(at, 1)}
    assert {r[0]: r[3] for r in rows} == {v: (None if v != tricky[-1] else 'deck "7"') for v in tricky}
