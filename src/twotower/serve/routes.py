"""One router per resource: recommendations, users, decisions, health."""

from __future__ import annotations

import json
import time
from typing import Annotated

import orjson
import psycopg
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from prometheus_client import generate_latest

from twotower.db import sql
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


StateDep = Annotated[ServiceState, Depends(get_state)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 422: {"model": Problem}}

recommendations = APIRouter(prefix="/v1", tags=["recommendations"])
users = APIRouter(prefix="/v1/users", tags=["users"])
decisions = APIRouter(prefix="/v1", tags=["decisions"])
health = APIRouter(tags=["health"])


@recommendations.post("/recommendations", response_model=RecommendationResponse, responses=ERRORS,
                      operation_id="recommend")
async def post_recommendations(body: RecommendationRequest, state: StateDep, who: PrincipalDep,
                               request: Request) -> Response:
    """Top-`limit` videos for a user, excluding what they already decided."""
    # Requests normally go to serve/hotpath.py, which does the same without FastAPI's layers.
    who.require(body.user_id)
    r = await recommend(state, body.user_id, body.limit, body.exclude_decided)
    request.state.source = r["source"]
    # Built by our own code in the documented shape (RecommendationResponse; a test validates it):
    # sent as is, without a second validation pass, which cost more than the search.
    return Response(orjson.dumps(r), media_type="application/json")


@users.post("/{user_id}/embedding", response_model=EmbeddingResponse, responses={**ERRORS, 404: {"model": Problem},
            503: {"model": Problem}}, operation_id="update_user_embedding")
async def post_user_embedding(user_id: Id, state: StateDep, who: PrincipalDep) -> EmbeddingResponse:
    """Recompute and store the user's embedding for every active model version."""
    who.require(user_id)
    t0 = time.perf_counter()
    try:
        async with state.pool.connection() as conn:
            done = await refresh_user(state, conn, user_id)
    except DB_DOWN:
        state.db_ok = False
        raise HTTPException(503, "the database is unreachable; try again shortly") from None
    if not done:
        raise HTTPException(404, f"unknown user {user_id!r}")
    return EmbeddingResponse(user_id=user_id, versions=done, took_ms=now_ms(t0))


@decisions.post("/decisions", response_model=DecisionResponse, responses={**ERRORS, 404: {"model": Problem},
                503: {"model": Problem}}, operation_id="record_decision")
async def post_decision(body: DecisionRequest, state: StateDep, who: PrincipalDep) -> DecisionResponse:
    """Record a like/nope (the latest answer wins) and refresh the user's embedding."""
    who.require(body.user_id)
    try:
        async with state.pool.connection() as conn:
            exists = await (await conn.execute("SELECT 1 FROM videos WHERE id = %s", (body.video_id,))).fetchone()
            if not exists:
                raise HTTPException(404, f"unknown video {body.video_id!r}")
            row = await (await conn.execute(sql("serve_record_decision"), body.model_dump())).fetchone()
            done = await refresh_user(state, conn, body.user_id) if body.refresh_embedding else []
    except DB_DOWN:
        state.db_ok = False
        raise HTTPException(503, "the database is unreachable; the decision was not recorded, retry it") from None
    except psycopg.errors.IntegrityError as e:
        raise HTTPException(409, f"conflict: {str(e).splitlines()[0]}") from None
    return DecisionResponse(user_id=body.user_id, video_id=body.video_id, decision_type=body.decision_type,
                            recorded_at=row[0].isoformat(), embedding_refreshed=done)


@health.get("/healthz", operation_id="healthz")
async def healthz() -> dict:
    """The process is alive."""
    return {"status": "ok"}


@health.get("/readyz", operation_id="readyz", responses={503: {"model": Problem}})
async def readyz(state: StateDep) -> Response:
    """Ready when the database answers and at least one model version is loaded."""
    ok = state.db_ok and bool(state.models)
    body = {"status": "ready" if ok else "not ready", "database": state.db_ok,
            "models": sorted(state.models), "traffic": dict(state.shares)}
    return Response(json.dumps(body), status_code=200 if ok else 503, media_type="application/json")


@health.get("/metrics", operation_id="metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    m = request.app.state.metrics
    m.update_gauges(request.app.state.service)
    return Response(generate_latest(m.registry), media_type="text/plain; version=0.0.4")
