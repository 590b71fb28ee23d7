"""Request and response bodies. Unknown fields, wrong types, out-of-range limits, ids that are
too long or hold a NUL byte are 422 with a clear JSON error (DESIGN §11)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendationRequest(Strict):
    user_id: Id
    limit: int = Field(20, ge=1, le=100)
    exclude_decided: bool = True


class Item(BaseModel):
    video_id: str
    score: float
    reasons: list[str] = []


class RecommendationResponse(BaseModel):
    user_id: str
    model_version: str | None
    source: Literal["two_tower", "cold_start", "fallback"]
    items: list[Item]
    took_ms: float


class DecisionRequest(Strict):
    user_id: Id
    video_id: Id
    decision_type: Literal["like", "nope"]
    refresh_embedding: bool = True


class DecisionResponse(BaseModel):
    user_id: str
    video_id: str
    decision_type: str
    recorded_at: str
    embedding_refreshed: list[str]


class EmbeddingResponse(BaseModel):
    user_id: str
    versions: list[str]
    took_ms: float


class Problem(BaseModel):
    detail: str
