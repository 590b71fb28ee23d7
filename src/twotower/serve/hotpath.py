"""`POST /v1/recommendations` as a plain ASGI handler, ahead of FastAPI's router.

The endpoint is the service's hot path. FastAPI's routing, dependency resolution and body
handling cost about as much as everything else the service does per request (docs/benchmarks.md,
"Serving"). This handler does the same work with the same pieces: the request edge
(serve/edge.py: body limit, JSON, strict validation, Authorization header, error shape), the
Authenticator and `recommend()`. The FastAPI route stays as the documented definition (OpenAPI)
and is what runs with `hot_path=False`. A test sends identical requests to both and compares."""

from __future__ import annotations

import logging

import orjson

from twotower.serve import edge
from twotower.serve.recommend import recommend
from twotower.serve.schemas import RecommendationRequest

PATH = "/v1/recommendations"
log = logging.getLogger("twotower.serve")


class _Route:
    path = PATH  # what the metrics middleware reads for its endpoint label (as from a FastAPI route)


class RecommendationsHotPath:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        fastapi_app = scope["app"]
        scope["route"] = _Route
        raw = scope["headers"]
        try:
            who = fastapi_app.state.auth.principal(edge.header(raw, b"authorization"))
            body = await edge.read_body(receive, edge.header(raw, b"content-length"))
            req = edge.parse(RecommendationRequest, body, edge.header(raw, b"content-type"))
            who.require(req.user_id)
        except edge.EdgeError as e:
            return await _send(send, e.status, e.body(), e.headers)
        try:
            r = await recommend(fastapi_app.state.service, req.user_id, req.limit, req.exclude_decided,
                                req.exclude_impressions, req.deck_id, req.diversity, req.explore_share)
        except Exception:  # as the app's own handler: logged, and one line to the client
            log.exception("unhandled error")
            return await _send(send, 500, edge.problem("internal error"))
        scope.setdefault("state", {})["source"] = r["source"]
        await _send(send, 200, r)


async def _send(send, status: int, body: dict, headers: dict | None = None) -> None:
    data = orjson.dumps(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
