"""The request edge, one implementation for every endpoint (the recommendations fast path and
the FastAPI routes alike): the body limit, JSON parsing, strict validation, the Authorization
header and the error shape `{"detail": str, "errors": [{"loc", "msg"}]}`.

JSON is parsed by orjson (RFC 8259: no BOM, valid UTF-8 only, nesting bounded), then validated
by the pydantic model in strict mode, so `"20"`, `20.0` or `true` are not a `limit`."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

MAX_BODY = 64 * 1024  # bodies are a few hundred bytes; larger ones are refused (413)
BEARER = {"WWW-Authenticate": "Bearer"}
M = TypeVar("M", bound=BaseModel)


class EdgeError(Exception):
    """An answer decided at the edge: status, JSON body, extra headers."""

    def __init__(self, status: int, detail: str, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, errors or [], headers or {}

    def body(self) -> dict:
        return {"detail": self.detail, "errors": self.errors}


def problem(detail: str, errors: list[dict] | None = None) -> dict:
    return {"detail": detail, "errors": errors or []}


def validation_problem(errors: list[dict]) -> dict:
    """The 422 body: the first error in words, then every error's location and message."""
    first = errors[0] if errors else {}
    loc = tuple(first.get("loc", ()))
    where = ".".join(str(x) for x in loc if x != "body")
    detail = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
    if loc in ((), ("body",)):
        detail = "the request body must be a JSON object (send Content-Type: application/json)"
    return problem(detail, [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors])


def unprocessable(errors: list[dict]) -> EdgeError:
    p = validation_problem(errors)
    return EdgeError(422, p["detail"], p["errors"])


def is_json(content_type: bytes | str | None) -> bool:
    if content_type is None:  # no Content-Type, no JSON
        return False
    if isinstance(content_type, str):
        content_type = content_type.encode("latin-1")
    mime = content_type.split(b";")[0].strip().lower()
    return mime == b"application/json" or (mime.startswith(b"application/") and mime.endswith(b"+json"))


def header(raw: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """One header's value from ASGI's raw list; None if absent. Sent twice it is refused (401 for
    Authorization): two servers that pick different copies disagree about who is asking."""
    values = [v for k, v in raw if k == name]
    if len(values) > 1:
        raise EdgeError(401 if name == b"authorization" else 400,
                        f"the {name.decode()} header was sent {len(values)} times: send it once",
                        headers=BEARER if name == b"authorization" else None)
    return values[0] if values else None


async def read_body(receive, content_length: bytes | None) -> bytes:
    """The whole body, refused with 413 past MAX_BODY (by its Content-Length or as it streams)."""
    if content_length is not None and content_length.isdigit() and int(content_length) > MAX_BODY:
        raise too_large()
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def too_large() -> EdgeError:
    return EdgeError(413, f"request body over {MAX_BODY} bytes")


def parse(model: type[M], body: bytes, content_type: bytes | str | None) -> M:
    """The body as `model`, or EdgeError(422) saying what is wrong."""
    if not is_json(content_type):
        raise unprocessable([{"loc": ("body",), "msg": "not JSON"}])
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise EdgeError(422, f"the request body is not valid JSON: {e}",
                        [{"loc": ["body"], "msg": "JSON decode error"}]) from None
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as e:
        raise unprocessable([{"loc": ("body", *err["loc"]), "msg": err["msg"]} for err in e.errors()]) from None
