"""One router per resource: recommendations, users, decisions, health. Bodies and the
Authorization header go through the request edge (serve/edge.py), as on the fast path."""

from __future__ import annotations

import time
from typing import Annotated

import orjson
import psycopg
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import generate_latest

from twotower.db import sql
from twotower.serve import edge
from twotower.serve.auth import Principal
from twotower.serve.recommend import DB_DOWN, recommend, refresh_user
from twotower.serve.schemas import (
    DecisionRequest,
    DecisionResponse,
    EmbeddingResponse,
    Id,
    Problem,
    RecommendationRequest,
    RecommendationResponse,
)
from twotower.serve.state import ServiceState, now_ms


async def get_state(request: Request) -> ServiceState:
    # async: a plain `def` dependency would be run in a thread pool on every request
    return request.app.state.service


async def get_principal(request: Request) -> Principal:
    return request.app.state.auth(request)


def json_body(model):
    """A dependency that reads the body through the edge: the same limit, parser, strict
    validation and errors as the fast path. The route documents the body with `body_doc`."""

    async def read(request: Request):
        raw = request.headers.raw
        body = await edge.read_body(request.receive, edge.header(raw, b"content-length"))
        return edge.parse(model, body, edge.header(raw, b"content-type"))

    return Depends(read)


def body_doc(model) -> dict:
    """The OpenAPI requestBody of a route whose body the edge reads (app.py adds the schema)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


StateDep = Annotated[ServiceState, Depends(get_state)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
Problems = {"model": Problem}
ERRORS = {401: {**Problems, "description": "missing, invalid or expired bearer token"},
          403: {**Problems, "description": "the token may not act for this user"},
          413: {**Problems, "description": f"request body over {edge.MAX_BODY} bytes"},
          422: {**Problems, "description": "malformed body (strict JSON types)"}}
DOWN = {503: {**Problems, "description": "the database is unreachable"}}
BODY_MODELS = (RecommendationRequest, DecisionRequest)
UNREACHABLE = "the database is unreachable; try again shortly"

recommendations = APIRouter(prefix="/v1", tags=["recommendations"])
users = APIRouter(prefix="/v1/users", tags=["users"])
decisions = APIRouter(prefix="/v1", tags=["decisions"])
health = APIRouter(tags=["health"])


@recommendations.post("/recommendations", response_model=RecommendationResponse, responses=ERRORS,
                      operation_id="recommend", openapi_extra=body_doc(RecommendationRequest))
async def post_recommendations(state: StateDep, who: PrincipalDep, request: Request,
                               body: RecommendationRequest = json_body(RecommendationRequest)) -> Response:
    """Top-`limit` videos for a user, excluding what they already decided. With the database
    unreachable, the answer is the cached popular list (`source: fallback`), never an error."""
    # Requests normally go to serve/hotpath.py, which does the same without FastAPI's layers.
    who.require(body.user_id)
    r = await recommend(state, body.user_id, body.limit, body.exclude_decided, body.exclude_impressions,
                        body.deck_id, body.diversity, body.explore_share)
    request.state.source = r["source"]
    # Built by our own code in the documented shape (RecommendationResponse; a test validates it):
    # sent as is, without a second validation pass, which cost more than the search.
    return Response(orjson.dumps(r), media_type="application/json")


@users.delete("/{user_id}", responses={**ERRORS, **DOWN}, operation_id="delete_user")
async def delete_user(user_id: Id, state: StateDep, who: PrincipalDep) -> dict:
    """Forget the user: every row twotower holds about them (user vectors of every version, the
    recommendation log), in one transaction; the app's own tables are the app's. 200 means
    committed."""
    from twotower.users import forget_async

    who.require(user_id)
    if not state.db_ok:
        raise edge.EdgeError(503, "the database is unreachable; nothing was deleted, retry")
    async with state.log_lock:  # no log write in flight; the user's queued rows dropped
        state.forget_pending(user_id)
        try:
            deleted = await state.run(lambda conn: forget_async(conn, user_id))
        except DB_DOWN:
            raise edge.EdgeError(503, "the database did not confirm the deletion; send it again") from None
    return {"user_id": user_id, "deleted": deleted}


@users.post("/{user_id}/embedding", response_model=EmbeddingResponse,
            responses={**ERRORS, 404: {**Problems, "description": "unknown user"}, **DOWN},
            operation_id="update_user_embedding")
async def post_user_embedding(user_id: Id, state: StateDep, who: PrincipalDep) -> EmbeddingResponse:
    """Recompute and store the user's embedding for every active model version."""
    who.require(user_id)
    t0 = time.perf_counter()
    if not state.db_ok:
        raise edge.EdgeError(503, UNREACHABLE)
    try:
        done = await state.run(lambda conn: refresh_user(state, conn, user_id))
    except DB_DOWN:
        raise edge.EdgeError(503, UNREACHABLE) from None
    if not done:
        raise edge.EdgeError(404, f"unknown user {user_id!r}")
    return EmbeddingResponse(user_id=user_id, versions=done, took_ms=now_ms(t0))


@decisions.post("/decisions", response_model=DecisionResponse, operation_id="record_decision",
                responses={**ERRORS, 404: {**Problems, "description": "unknown video"},
                           409: {**Problems, "description": "conflicts with the app's own constraints"}, **DOWN},
                openapi_extra=body_doc(DecisionRequest))
async def post_decision(state: StateDep, who: PrincipalDep,
                        body: DecisionRequest = json_body(DecisionRequest)) -> DecisionResponse:
    """Record a like/nope (the latest answer wins; sending it again is safe) and refresh the
    user's embedding. A 200 means the decision is committed. If only the refresh fails, the
    answer is still 200, with `embedding_error` saying so."""
    who.require(body.user_id)
    if not state.db_ok:
        raise edge.EdgeError(503, "the database is unreachable; the decision was not recorded, retry it")

    async def write(conn):
        exists = await (await conn.execute("SELECT 1 FROM src_videos WHERE id = %s", (body.video_id,))).fetchone()
        if not exists:
            raise edge.EdgeError(404, f"unknown video {body.video_id!r}")
        return await (await conn.execute(sql("serve_record_decision"), body.model_dump())).fetchone()

    try:
        row = await state.run(write)
        if row is None or row[0] is None:
            raise edge.EdgeError(409, "this install has no decisions table to write to (see source.decisions)")
    except DB_DOWN:
        raise edge.EdgeError(503, "the database did not confirm the decision; send it again "
                                  "(recording the same answer twice is safe)") from None
    except psycopg.errors.IntegrityError as e:
        raise edge.EdgeError(409, f"conflict: {str(e).splitlines()[0]}") from None
    done, problem = [], None
    if body.refresh_embedding:
        try:
            done = await state.run(lambda conn: refresh_user(state, conn, body.user_id))
        except DB_DOWN:
            problem = "the decision is saved, but the embedding refresh did not finish; the next batch run does it"
    return DecisionResponse(user_id=body.user_id, video_id=body.video_id, decision_type=body.decision_type,
                            recorded_at=row[0].isoformat(), embedding_refreshed=done, embedding_error=problem)


@health.get("/healthz", operation_id="healthz")
async def healthz() -> dict:
    """The process is alive."""
    return {"status": "ok"}


@health.get("/readyz", operation_id="readyz", responses={503: {"description": "not ready"}})
async def readyz(state: StateDep) -> Response:
    """Ready when the database answers and at least one model version is loaded; active versions
    that could not be loaded are listed under `failed`."""
    ok = state.db_ok and bool(state.models)
    body = {"status": "ready" if ok else "not ready", "database": state.db_ok,
            "models": sorted(state.models), "traffic": dict(state.shares), "failed": state.failed}
    return Response(orjson.dumps(body), status_code=200 if ok else 503, media_type="application/json")


@health.get("/metrics", operation_id="metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    m = request.app.state.metrics
    m.update_gauges(request.app.state.service)
    return Response(generate_latest(m.registry), media_type="text/plain; version=0.0.4")
