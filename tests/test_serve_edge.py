"""One request edge: every endpoint (the fast path and the FastAPI routes) refuses the same bad
input with the same status and the same error shape, and the OpenAPI document says so."""

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.test_serve import SVC, app_settings, token, warm_user, world  # noqa: F401  (fixture)
from twotower.serve import create_app
from twotower.serve.edge import MAX_BODY

JSON = {"Content-Type": "application/json"}
NESTED = b"[" * 5000 + b"]" * 5000

# (field overrides, or raw bytes) -> expected status; every endpoint's body gets the same treatment.
BAD_FIELDS = [
    ({"limit": "20"}, "recommend"), ({"limit": 20.0}, "recommend"), ({"limit": 1e2}, "recommend"),
    ({"limit": True}, "recommend"), ({"exclude_decided": "yes"}, "recommend"), ({"exclude_decided": 1}, "recommend"),
    ({"exclude_decided": 0}, "recommend"), ({"refresh_embedding": "no"}, "decide"), ({"refresh_embedding": 0}, "decide"),
    ({"decision_type": "LIKE"}, "decide"), ({"surprise": 1}, "both"),
    ({"user_id": "   "}, "both"), ({"user_id": "\x01abc"}, "both"), ({"user_id": "\u200b"}, "both"),
    ({"user_id": "a\u200bb"}, "both"), ({"user_id": " padded"}, "both"), ({"user_id": "tab\t"}, "both"),
    ({"user_id": "a\x00b"}, "both"), ({"user_id": "x" * 129}, "both"), ({"user_id": 7}, "both"),
]
BAD_RAW = [b'\xef\xbb\xbf{"user_id": "u"}', b'{"user_id": "\xff\xfe"}', NESTED, b'{"user_id": ', b"",
           b'{"user_id": "\\ud800"}', b'{"user_id": "u", "limit": NaN}']


def good(kind: str, user: str, video: str) -> dict:
    if kind == "recommend":
        return {"user_id": user, "limit": 5}
    return {"user_id": user, "video_id": video, "decision_type": "like"}


@pytest.fixture
def clients(world, settings):  # noqa: F811
    with TestClient(create_app(app_settings(settings))) as hot, \
            TestClient(create_app(app_settings(settings), hot_path=False)) as plain:
        yield hot, plain


def endpoints(clients):
    hot, plain = clients
    return [("recommend", hot, "/v1/recommendations"), ("recommend", plain, "/v1/recommendations"),
            ("decide", hot, "/v1/decisions")]


def problem(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"] and isinstance(body["errors"], list), body
    return body


def test_bad_fields_are_422_on_every_endpoint(clients, world):  # noqa: F811
    u, v = warm_user(world), world.execute("SELECT id FROM videos LIMIT 1").fetchone()[0]
    profiles = world.execute("SELECT count(*) FROM profiles").fetchone()[0]
    for kind, c, path in endpoints(clients):
        assert c.post(path, json=good(kind, u, v), headers=SVC).status_code == 200
        for fields, applies in BAD_FIELDS:
            if applies not in (kind, "both"):
                continue
            body = problem(c.post(path, json={**good(kind, u, v), **fields}, headers=SVC), 422)
            assert body["errors"][0]["loc"][0] == "body", body
    # nothing was written for a refused id
    assert world.execute("SELECT count(*) FROM profiles").fetchone()[0] == profiles


def test_bad_json_is_422_the_same_everywhere(clients, world):  # noqa: F811
    for _, c, path in endpoints(clients):
        for raw in BAD_RAW:
            body = problem(c.post(path, content=raw, headers={**SVC, **JSON}), 422)
            assert "JSON" in body["detail"] or "body" in body["detail"], (raw[:20], body)
    hot, plain = clients
    for raw in BAD_RAW:  # and word for word the same on both implementations of the route
        a = hot.post("/v1/recommendations", content=raw, headers={**SVC, **JSON})
        b = plain.post("/v1/recommendations", content=raw, headers={**SVC, **JSON})
        assert a.json() == b.json(), raw[:20]


def test_oversized_body_is_413_json_everywhere(clients, world):  # noqa: F811
    big = json.dumps({"user_id": "u", "pad": "x" * MAX_BODY}).encode()
    for _, c, path in endpoints(clients):
        assert "bytes" in problem(c.post(path, content=big, headers={**SVC, **JSON}), 413)["detail"]

        def chunks():  # no Content-Length: refused while streaming
            for _ in range(80):
                yield b"x" * 1024

        problem(c.post(path, content=chunks(), headers={**SVC, **JSON}), 413)


def test_auth_errors_have_the_bearer_challenge(clients, world):  # noqa: F811
    u, v = warm_user(world), world.execute("SELECT id FROM videos LIMIT 1").fetchone()[0]
    for kind, c, path in endpoints(clients):
        for headers in ({}, {"Authorization": "Basic x"}, {"Authorization": "Bearer nope"}):
            r = c.post(path, json=good(kind, u, v), headers=headers)
            problem(r, 401)
            assert r.headers["www-authenticate"] == "Bearer"
        # two Authorization headers: refused, whichever copy would have passed
        two = [("authorization", SVC["Authorization"]), ("authorization", token(u)["Authorization"])]
        r = c.post(path, json=good(kind, u, v), headers=two)
        assert "once" in problem(r, 401)["detail"] and r.headers["www-authenticate"] == "Bearer"
        problem(c.post(path, json=good(kind, "someone-else", v), headers=token(u)), 403)
    c = clients[1]
    for user in (quote(" "), quote("\u200b"), quote("a\x01")):
        problem(c.post(f"/v1/users/{user}/embedding", headers=SVC), 422)
    problem(c.post("/v1/users/nobody-here/embedding", headers=SVC), 404)
    problem(c.get("/no/such/path"), 404)


def test_openapi_states_the_edge(clients):
    doc = clients[1].get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, method in (("/v1/recommendations", "post"), ("/v1/decisions", "post")):
        op = doc["paths"][path][method]
        assert {"401", "403", "413", "422"} <= set(op["responses"]), (path, op["responses"].keys())
        assert op["security"] == [{"bearer": []}]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"]
    assert "503" in doc["paths"]["/v1/decisions"]["post"]["responses"]
    assert "503" in doc["paths"]["/v1/users/{user_id}/embedding"]["post"]["responses"]
    assert "pattern" in doc["components"]["schemas"]["RecommendationRequest"]["properties"]["user_id"]
