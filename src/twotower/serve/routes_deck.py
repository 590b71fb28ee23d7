"""The deck's per-user settings: mutes ("less of this") and diversity. A muted tag, performer,
maker or video never appears in that user's decks again, in any path (the service,
recommend_videos, the Edge Functions), because every path filters through twotower.deck_hidden;
the diversity setting is what every path's MMR uses when a request names none
(read where the deck is built: serve_recommend.sql, twotower.recommend)."""

from __future__ import annotations

from fastapi import APIRouter

from twotower.serve import edge
from twotower.serve.recommend import DB_DOWN
from twotower.serve.routes import (
    DOWN,
    ERRORS,
    UNREACHABLE,
    PrincipalDep,
    StateDep,
    body_doc,
    json_body,
)
from twotower.serve.schemas import (
    Id,
    Mute,
    MutesResponse,
    Preferences,
    PreferencesResponse,
    UserSettings,
    UserSettingsResponse,
)

mutes = APIRouter(prefix="/v1/users", tags=["users"])
BODY_MODELS = (Mute, UserSettings, Preferences)
LIST = "SELECT kind, value FROM user_mutes WHERE user_id = %s ORDER BY kind, value"


async def _change(state, user_id: str, statement: str, args: tuple) -> MutesResponse:
    if not state.db_ok:
        raise edge.EdgeError(503, UNREACHABLE)

    async def run(conn):
        async with conn.transaction():
            if statement:
                await conn.execute(statement, args)
            return await (await conn.execute(LIST, (user_id,))).fetchall()

    try:
        rows = await state.run(run)
    except DB_DOWN:
        raise edge.EdgeError(503, "the database did not confirm the change; send it again (it is safe to repeat)") from None
    return MutesResponse(user_id=user_id, mutes=[Mute(kind=k, value=v) for k, v in rows])


@mutes.get("/{user_id}/mutes", response_model=MutesResponse, responses={**ERRORS, **DOWN}, operation_id="list_mutes")
async def list_mutes(user_id: Id, state: StateDep, who: PrincipalDep) -> MutesResponse:
    """What the user has muted."""
    who.require(user_id)
    return await _change(state, user_id, "", ())


@mutes.post("/{user_id}/mutes", response_model=MutesResponse, responses={**ERRORS, **DOWN}, operation_id="add_mute",
            openapi_extra=body_doc(Mute))
async def add_mute(user_id: Id, state: StateDep, who: PrincipalDep, body: Mute = json_body(Mute)) -> MutesResponse:
    """Mute a tag, performer, maker or video for this user (muting it again is a no-op). 200
    means committed: the very next deck leaves it out."""
    who.require(user_id)
    return await _change(state, user_id, "INSERT INTO user_mutes (user_id, kind, value) VALUES (%s, %s, %s) "
                         "ON CONFLICT DO NOTHING", (user_id, body.kind, body.value))


@mutes.delete("/{user_id}/mutes", response_model=MutesResponse, responses={**ERRORS, **DOWN},
              operation_id="remove_mute", openapi_extra=body_doc(Mute))
async def remove_mute(user_id: Id, state: StateDep, who: PrincipalDep, body: Mute = json_body(Mute)) -> MutesResponse:
    """Unmute (unmuting what is not muted is a no-op)."""
    who.require(user_id)
    return await _change(state, user_id, "DELETE FROM user_mutes WHERE user_id = %s AND kind = %s AND value = %s",
                         (user_id, body.kind, body.value))


async def _settings(state, user_id: str, diversity: float | None, change: bool) -> UserSettingsResponse:
    if not state.db_ok:
        raise edge.EdgeError(503, UNREACHABLE)

    async def run(conn):
        async with conn.transaction():
            if change:
                await conn.execute("INSERT INTO user_settings (user_id, diversity, updated_at) VALUES (%s, %s, now()) "
                                   "ON CONFLICT (user_id) DO UPDATE SET diversity = excluded.diversity, "
                                   "updated_at = excluded.updated_at", (user_id, diversity))
            return await (await conn.execute("SELECT diversity FROM user_settings WHERE user_id = %s",
                                             (user_id,))).fetchone()

    try:
        row = await state.run(run)
    except DB_DOWN:
        raise edge.EdgeError(503, "the database did not confirm the change; send it again (it is safe to repeat)") from None
    return UserSettingsResponse(user_id=user_id, diversity=row[0] if row else None)


@mutes.get("/{user_id}/settings", response_model=UserSettingsResponse, responses={**ERRORS, **DOWN},
           operation_id="get_settings")
async def get_settings(user_id: Id, state: StateDep, who: PrincipalDep) -> UserSettingsResponse:
    """The user's own deck settings (diversity null: the installation's default applies)."""
    who.require(user_id)
    return await _settings(state, user_id, None, False)


@mutes.put("/{user_id}/settings", response_model=UserSettingsResponse, responses={**ERRORS, **DOWN},
           operation_id="put_settings", openapi_extra=body_doc(UserSettings))
async def put_settings(user_id: Id, state: StateDep, who: PrincipalDep,
                       body: UserSettings = json_body(UserSettings)) -> UserSettingsResponse:
    """Set the user's diversity, 0 (the plain ranking) .. 1 (the most varied deck); null clears
    it. 200 means committed: the next deck uses it whenever the request names no diversity."""
    who.require(user_id)
    return await _settings(state, user_id, body.diversity, True)


PICKS = "SELECT kind, value FROM user_preferences WHERE user_id = %s ORDER BY kind, value"


async def _preferences(state, user_id: str, body: Preferences | None) -> PreferencesResponse:
    if not state.db_ok:
        raise edge.EdgeError(503, UNREACHABLE)

    async def run(conn):
        async with conn.transaction():
            if body is not None:  # the whole set, replaced in one transaction
                await conn.execute("DELETE FROM user_preferences WHERE user_id = %s", (user_id,))
                picks = {(k, v) for k, vs in (("tag", body.tags), ("performer", body.performers),
                                              ("maker", body.makers)) for v in vs}
                if picks:
                    async with conn.cursor() as cur:
                        await cur.executemany("INSERT INTO user_preferences (user_id, kind, value) VALUES (%s, %s, %s)",
                                              [(user_id, k, v) for k, v in sorted(picks)])
            return await (await conn.execute(PICKS, (user_id,))).fetchall()

    try:
        rows = await state.run(run)
    except DB_DOWN:
        raise edge.EdgeError(503, "the database did not confirm the change; send it again (it is safe to repeat)") from None
    by = {"tag": [], "performer": [], "maker": []}
    for k, v in rows:
        by[k].append(v)
    return PreferencesResponse(user_id=user_id, tags=by["tag"], performers=by["performer"], makers=by["maker"])


@mutes.get("/{user_id}/preferences", response_model=PreferencesResponse, responses={**ERRORS, **DOWN},
           operation_id="get_preferences")
async def get_preferences(user_id: Id, state: StateDep, who: PrincipalDep) -> PreferencesResponse:
    """What the user picked at sign-up."""
    who.require(user_id)
    return await _preferences(state, user_id, None)


@mutes.post("/{user_id}/preferences", response_model=PreferencesResponse, responses={**ERRORS, **DOWN},
            operation_id="set_preferences", openapi_extra=body_doc(Preferences))
async def set_preferences(user_id: Id, state: StateDep, who: PrincipalDep,
                          body: Preferences = json_body(Preferences)) -> PreferencesResponse:
    """Onboarding: the tags, performers and makers the user picked (the whole set, replaced). A
    user without likes gets decks from them (`source: onboarding`) until their first like. 200
    means committed."""
    who.require(user_id)
    return await _preferences(state, user_id, body)
