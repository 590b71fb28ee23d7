"""`POST /v1/recommendations` as a plain ASGI handler, ahead of FastAPI's router.

The endpoint is the service's hot path. FastAPI's routing, dependency resolution and body
handling cost about as much as everything else the service does per request (docs/benchmarks.md,
"Serving"). This handler does the same work with the same pieces: the pydantic request model,
the Authenticator, `recommend()`, and the same JSON error bodies. The FastAPI route stays as the
documented definition (OpenAPI) and is what runs with `hot_path=False`. A test sends identical
requests to both and compares the answers."""

from __future__ import annotations

import logging

import orjson
from fastapi import HTTPException
from pydantic import ValidationError

from twotower.serve.recommend import recommend
from twotower.serve.schemas import RecommendationRequest

PATH = "/v1/recommendations"
MAX_BODY = 64 * 1024  # bodies are a few hundred bytes; larger ones are refused (413), here and app-wide
log = logging.getLogger("twotower.serve")


class TooLarge(Exception):
    pass


def validation_problem(errors: list[dict]) -> dict:
    """The 422 body for request-validation errors (shared with the FastAPI handler)."""
    first = errors[0] if errors else {}
    loc = tuple(first.get("loc", ()))
    where = ".".join(str(x) for x in loc if x != "body")
    detail = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
    if loc in ((), ("body",)):
        detail = "the request body must be a JSON object (send Content-Type: application/json)"
    return {"detail": detail, "errors": [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors]}


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:  # as FastAPI: no Content-Type, no JSON
        return False
    mime = content_type.split(b";")[0].strip().lower()
    return mime == b"application/json" or (mime.startswith(b"application/") and mime.endswith(b"+json"))


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
        headers = dict(scope["headers"])  # lower-case names (ASGI); a repeated header keeps its last value
        try:
            auth = headers.get(b"authorization")
            who = fastapi_app.state.auth.principal(auth.decode("latin-1") if auth is not None else "")
            body = await _read_body(receive, headers.get(b"content-length"))
            if not _is_json(headers.get(b"content-type")):
                return await _send(send, 422, validation_problem([{"loc": ("body",), "msg": "not JSON"}]))
            try:
                req = RecommendationRequest.model_validate_json(body)
            except ValidationError as e:
                errors = [{"loc": ("body", *err["loc"]), "msg": err["msg"]} for err in e.errors()]
                return await _send(send, 422, validation_problem(errors))
            who.require(req.user_id)
        except HTTPException as e:
            return await _send(send, e.status_code, {"detail": e.detail}, e.headers)
        except TooLarge:
            return await _send(send, 413, {"detail": f"request body over {MAX_BODY} bytes"})
        try:
            r = await recommend(fastapi_app.state.service, req.user_id, req.limit, req.exclude_decided)
        except Exception:  # as the app's own handler: logged, and one line to the client
            log.exception("unhandled error")
            return await _send(send, 500, {"detail": "internal error"})
        scope.setdefault("state", {})["source"] = r["source"]
        await _send(send, 200, r)


async def _read_body(receive, content_length: bytes | None) -> bytes:
    if content_length is not None and content_length.isdigit() and int(content_length) > MAX_BODY:
        raise TooLarge
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(send, status: int, body: dict, headers: dict | None = None) -> None:
    data = orjson.dumps(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
