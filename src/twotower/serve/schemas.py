"""Request and response bodies. Requests are validated strictly (serve/edge.py): unknown fields,
wrong JSON types (`"20"` or `20.0` for an integer, `1` for a boolean), out-of-range limits and
ids that are too long, blank, padded with spaces or hold control or invisible characters are
422 with a clear JSON error (DESIGN §11)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Control characters (C0, DEL, C1) and the invisible format characters (soft hyphen, zero-width
# and direction marks, word joiners, BOM) nowhere; white space not at either end. The same
# pattern is published in the OpenAPI document, so clients (and schemathesis) know the rule.
_BAD = "\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u061c\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff"
ID_PATTERN = f"^[^{_BAD}\\s](?:[^{_BAD}]*[^{_BAD}\\s])?$"
_ID = re.compile(ID_PATTERN)


def _clean_id(v: str) -> str:
    if not _ID.fullmatch(v):
        if not v.strip():
            raise ValueError("must not be blank")
        if v != v.strip():
            raise ValueError("must not start or end with white space")
        raise ValueError("must hold only visible characters (no control or zero-width characters)")
    return v


Id = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_clean_id),
               Field(json_schema_extra={"pattern": ID_PATTERN})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendationRequest(Strict):
    user_id: Id
    limit: int = Field(20, ge=1, le=100)
    exclude_decided: bool = True
    exclude_impressions: bool = True  # skip cards served within serving.impression_ttl_seconds
    deck_id: Id | None = None  # continue this deck: none of its cards again, whatever the TTL
    # MMR re-ranking: 0 the plain ranking .. 1 the most varied; null: the user's own setting
    # (PUT /v1/users/{id}/settings), else serving.diversity
    diversity: float | None = Field(None, ge=0, le=1)
    # share of the deck dealt to new videos (Thompson sampling), marked "source": "explore";
    # null: serving.explore_share
    explore_share: float | None = Field(None, ge=0, le=1)


class Item(BaseModel):
    video_id: str
    score: float
    reasons: list[str] = []
    # only on exploration's cards, and on the picks' cards dealt into a two_tower deck while the
    # user's onboarding fades (serving.onboarding_fade_likes)
    source: Literal["explore", "onboarding"] | None = None


class RecommendationResponse(BaseModel):
    user_id: str
    model_version: str | None
    source: Literal["two_tower", "onboarding", "cold_start", "fallback"]
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
    embedding_error: str | None = None  # the decision is saved; its embedding refresh was not


class Mute(Strict):
    kind: Literal["tag", "performer", "maker", "video"]
    value: Id


class MutesResponse(BaseModel):
    user_id: str
    mutes: list[Mute]


class UserSettings(Strict):
    """The user's own deck settings; diversity null: the installation's default (serving.diversity)."""

    diversity: float | None = Field(None, ge=0, le=1)


class UserSettingsResponse(BaseModel):
    user_id: str
    diversity: float | None


class Preferences(Strict):
    """What a user picked at sign-up; POST replaces the whole set (empty lists clear it)."""

    tags: list[Id] = Field(default_factory=list, max_length=50)
    performers: list[Id] = Field(default_factory=list, max_length=50)
    makers: list[Id] = Field(default_factory=list, max_length=50)


class PreferencesResponse(Preferences):
    user_id: str


class EmbeddingResponse(BaseModel):
    user_id: str
    versions: list[str]
    took_ms: float


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str | None


class Problem(BaseModel):
    """Every error answer, whatever the status."""

    detail: str
    errors: list[ErrorItem] = []
