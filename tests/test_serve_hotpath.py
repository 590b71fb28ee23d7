"""The hot path answers POST /v1/recommendations exactly as the FastAPI route does."""

import pytest
from fastapi.testclient import TestClient

from tests.test_serve import SVC, app_settings, token, warm_user, world  # noqa: F401  (fixture)
from twotower.serve import create_app

BAD_BODIES = [{"user_id": 5}, {"user_id": "u", "limit": 0}, {"user_id": "u", "limit": 101},
              {"user_id": "u", "limit": "many"}, {"user_id": "u", "surprise": 1}, {"user_id": "x" * 200},
              {"user_id": "a\u0000b"}, {}, [1, 2], "text", None, {"user_id": "u", "diversity": 2},
              {"user_id": "u", "diversity": "x"}, {"user_id": "u", "explore_share": 1.01}]


@pytest.fixture
def clients(world, settings):  # noqa: F811
    with TestClient(create_app(app_settings(settings))) as hot, \
            TestClient(create_app(app_settings(settings), hot_path=False)) as plain:
        yield hot, plain


def same(hot, plain, **kw) -> dict | None:
    a, b = hot.post("/v1/recommendations", **kw), plain.post("/v1/recommendations", **kw)
    assert a.status_code == b.status_code, (kw, a.text, b.text)
    assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
    ja, jb = a.json(), b.json()
    if a.status_code == 200:
        ja.pop("took_ms"), jb.pop("took_ms")
    else:
        assert a.headers.get("www-authenticate") == b.headers.get("www-authenticate")
    if a.status_code == 422:  # pydantic words a few messages differently for JSON and Python input
        for j in (ja, jb):
            j["errors"] = [e["loc"] for e in j["errors"]]
    assert ja == jb, (kw, ja, jb)
    return ja


def test_hot_path_matches_the_fastapi_route(clients, world):  # noqa: F811
    hot, plain = clients
    u = warm_user(world)
    other = world.execute("SELECT user_id FROM profiles WHERE user_id <> %s LIMIT 1", (u,)).fetchone()[0]
    for limit in (1, 7, 20, 100):
        body = same(hot, plain, json={"user_id": u, "limit": limit}, headers=token(u))
        assert body["source"] == "two_tower" and len(body["items"]) == limit
    same(hot, plain, json={"user_id": u, "exclude_decided": False}, headers=SVC)
    mmr = same(hot, plain, json={"user_id": u, "diversity": 0.5, "exclude_impressions": False}, headers=SVC)
    assert mmr["source"] == "two_tower" and len(mmr["items"]) == 20
    assert same(hot, plain, json={"user_id": "cold-one"}, headers=SVC)["source"] == "cold_start"
    # auth: missing, malformed, bad signature, expired, someone else's id
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer not-a-jwt"},
                    token(u, secret="a-different-secret-of-the-same-length!"), token(u, exp_in=-10)):
        same(hot, plain, json={"user_id": u}, headers=headers)
    assert same(hot, plain, json={"user_id": other}, headers=token(u))["detail"].startswith("this token")
    # malformed bodies, with a valid token
    for body in BAD_BODIES:
        assert "detail" in same(hot, plain, json=body, headers=SVC)
    same(hot, plain, content=b"user_id=u", headers={**SVC, "Content-Type": "application/x-www-form-urlencoded"})
    same(hot, plain, content=b'{"user_id": "u"}', headers={**SVC, "Content-Type": "text/plain"})
    same(hot, plain, content=b'{"user_id": "' + u.encode() + b'"}', headers=SVC)  # no Content-Type
    bad_json = hot.post("/v1/recommendations", content=b'{"user_id": ', headers={**SVC, "Content-Type": "application/json"})
    assert bad_json.status_code == 422 and "JSON" in bad_json.json()["detail"]


def test_hot_path_is_measured(clients, world):  # noqa: F811
    hot, _ = clients
    u = warm_user(world)
    assert hot.post("/v1/recommendations", json={"user_id": u}, headers=token(u)).status_code == 200
    assert hot.post("/v1/recommendations", json={"user_id": u}, headers={}).status_code == 401
    text = hot.get("/metrics").text
    assert 'twotower_request_seconds_count{endpoint="/v1/recommendations",source="two_tower"} 1.0' in text
    assert 'twotower_errors_total{endpoint="/v1/recommendations",status="401"} 1.0' in text


def test_oversized_bodies_are_refused(clients):
    for c in clients:
        big = {"user_id": "u", "padding": "x" * 100_000}
        assert c.post("/v1/recommendations", json=big, headers=SVC).status_code == 413
        assert c.post("/v1/decisions", json=big, headers=SVC).status_code == 413


def test_an_unexpected_error_is_one_line_500(clients, world, monkeypatch):  # noqa: F811
    import twotower.serve.hotpath as hotpath

    async def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(hotpath, "recommend", broken)
    u = warm_user(world)
    r = clients[0].post("/v1/recommendations", json={"user_id": u}, headers=token(u))
    assert r.status_code == 500 and r.json() == {"detail": "internal error", "errors": []}  # as the app handler
    assert 'twotower_errors_total{endpoint="/v1/recommendations",status="500"} 1.0' in clients[0].get("/metrics").text
