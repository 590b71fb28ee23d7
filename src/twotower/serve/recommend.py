"""The recommendation path: the user vector (stored when fresh, else SQL feature function +
ONNX user tower), candidates from the version's HNSW index with decided videos and the deck
filter skipped (impressions within the TTL, the deck's cards, mutes), MMR re-ranking when the
deck asks for diversity (in the same statement), a fill when the filter
leaves the list short (popular, then the oldest impressions), reasons, and the cold-start /
fallback paths."""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql as psql

from twotower.db import OVERFETCH_MAX, search_settings, sql
from twotower.embed import user_vectors_from_json
from twotower.export import Artifacts
from twotower.serve.state import DB_DOWN, ServiceState, now_ms

__all__ = ["DB_DOWN", "recommend", "refresh_user", "fallback"]


async def user_features(conn: psycopg.AsyncConnection, user_id: str, max_history: int) -> dict | None:
    """get_user_embedding_features JSON of one user; None for an unknown user."""
    cur = await conn.execute(sql("user_features"), {"max_history": max_history, "user_ids": [user_id]})
    return (await cur.fetchone())[1]


async def user_vector(conn: psycopg.AsyncConnection, art: Artifacts, user_id: str) -> np.ndarray | None:
    """From the SQL feature function and the ONNX user tower; None for an unknown user."""
    j = await user_features(conn, user_id, art.pipeline.max_history)
    return None if j is None else user_vectors_from_json(art, [j])[0]


async def store_user_vector(conn: psycopg.AsyncConnection, version: str, user_id: str, vec: np.ndarray) -> None:
    await conn.execute("INSERT INTO user_embeddings (model_version, user_id, embedding, last_updated) "
                       "VALUES (%s, %s, %s, clock_timestamp()) ON CONFLICT (model_version, user_id) DO UPDATE "
                       "SET embedding = excluded.embedding, last_updated = excluded.last_updated",
                       (version, user_id, vec.astype(np.float32)))


@dataclass(frozen=True)
class Ask:
    """One request's deck: who, how many, and what to keep out."""

    user_id: str
    limit: int
    exclude: bool = True  # decided videos
    impressions: bool = True  # cards served within the TTL
    deck_id: str | None = None  # continue this deck: none of its cards again
    diversity: float | None = None  # MMR; None: the user's setting, else serving.diversity
    explore: float | None = None  # share of new videos; None: serving.explore_share

    def params(self, state: ServiceState) -> dict:
        return {"user_id": self.user_id, "imp": self.impressions, "deck": self.deck_id, "div": self.diversity,
                "explore": self.explore,
                "pending": state.pending_impressions(self.user_id, self.impressions, self.deck_id)}


async def recommend(state: ServiceState, user_id: str, limit: int, exclude: bool, impressions: bool = True,
                    deck_id: str | None = None, diversity: float | None = None,
                    explore: float | None = None) -> dict:
    """The response body as a plain dict: the route sends it as JSON without re-validating it."""
    t0 = time.perf_counter()
    if not state.db_ok:
        return fallback(state, user_id, limit, t0)
    version = state.assign(user_id)
    ask = Ask(user_id, limit, exclude, impressions, deck_id, diversity, explore)
    if explore:
        state.explore_asked = True
    try:
        return await state.run(lambda conn: _recommend(state, conn, ask, version, t0))
    except DB_DOWN:  # after retries on fresh connections: the database is really gone
        return fallback(state, user_id, limit, t0)


async def _recommend(state: ServiceState, conn, ask: Ask, version: str | None, t0: float) -> dict:
    user_id, limit = ask.user_id, ask.limit
    if version is None:
        return await _popular(state, conn, ask, "cold_start", None, t0)
    art = state.models[version]
    e = state.cfg.embedding
    wide = limit > e.ef_search and state.iterative  # (over-fetching sets its own ef_search)
    async with (conn.transaction() if wide else contextlib.nullcontext()):
        if wide:  # transaction-local, so it never reaches the pool's next user
            await conn.execute(*search_settings(limit, e.max_scan_tuples, True))
        # The common case, one round trip: the stored vector is fresh.
        rows = await _search(conn, art, ask, ask.params(state), None, state.iterative)
        if not rows:
            cur = await conn.execute(sql("serve_user_state"), {"version": version, "user_id": user_id})
            emb, fresh, has_decisions = await cur.fetchone()
            q = None
            if has_decisions:
                q = emb.to_numpy() if (emb is not None and fresh) else await user_vector(conn, art, user_id)
            if q is None or not q.any():  # nothing the model knows of this user (as recommend_videos)
                return await _onboarding(state, conn, ask, version, art, t0)
            rows = await _search(conn, art, ask, ask.params(state), q, state.iterative)
        onboard = rows[-1][4] or 0  # the onboarding fade's cards for the user's picks
        if onboard >= limit:  # no likes yet: the picks' deck, if any of its videos is left
            onboarded = await _onboarding_rows(state, conn, ask, version)
            if onboarded:
                return await _deck(state, conn, ask, version, onboarded, "onboarding", t0)
        elif onboard:  # fading: that many of the picks' videos dealt among the ranked cards
            taken = [r[0] for r in rows[:-1] if r[3] is False]
            picks = (await _onboarding_rows(state, conn, ask, version, onboard, taken))[:-1]
            if picks:  # (exploration waits until the fade is over)
                rows = [r for r in rows[:-1] if r[3] is False] + [(v, s, None, "onboarding", None)
                                                                 for v, s, *_ in picks] + rows[-1:]
    return await _deck(state, conn, ask, version, rows, "two_tower", t0)


async def _onboarding(state: ServiceState, conn, ask: Ask, version: str, art: Artifacts, t0: float) -> dict:
    """A user without likes who picked tags, performers or makers at sign-up: their picks'
    videos ranked by the preference vector (as recommend_videos); else the cold-start list."""
    rows = await _onboarding_rows(state, conn, ask, version)
    if not rows:
        return await _popular(state, conn, ask, "cold_start", version, t0)
    return await _deck(state, conn, ask, version, rows, "onboarding", t0)


async def _onboarding_rows(state: ServiceState, conn, ask: Ask, version: str, n: int | None = None,
                           taken: list[str] | None = None) -> list[tuple]:
    """Up to `n` (default the limit) of the onboarding deck's rows, none of `taken`, in the
    search's shape (an empty likes row last); [] when the user is past the onboarding fade,
    picked nothing, or every video of the picks is kept out."""
    params = ask.params(state) | {"version": version, "n": n or ask.limit, "taken": taken or []}
    rows = await (await conn.execute(sql("serve_onboarding"), params)).fetchall()
    return [(v, s, None, False, None) for v, s in rows] + [(None, None, [], None, None)] if rows else []


async def _deck(state: ServiceState, conn, ask: Ask, version: str, rows: list[tuple], source: str, t0: float) -> dict:
    """The search's rows as the deck: reasons, exploration's (or the fading onboarding's) cards
    dealt in, the popular fill. A row's fourth column is False for a ranked card, True for
    exploration's, "onboarding" for the picks' cards of the fade."""
    user_id, limit = ask.user_id, ask.limit
    liked = rows.pop()[2] or []  # the last row carries the user's recent likes
    ranked = [r for r in rows if r[3] is False]
    ids = [r[0] for r in ranked]
    reasons = state.reasons.explain(liked, ids) if source == "two_tower" else [["your picks"]] * len(ids)
    items = [{"video_id": r[0], "score": r[1], "reasons": why} for r, why in zip(ranked, reasons, strict=True)]
    explored = [{"video_id": r[0], "score": r[1], "reasons": ["your picks" if r[3] == "onboarding" else "new video"],
                 "source": "onboarding" if r[3] == "onboarding" else "explore"} for r in rows if r[3] is not False]
    if explored:
        items = deal(items, explored, limit)
        ids = [i["video_id"] for i in items]
    if len(items) < limit:  # the filter left the list short: fill with popular videos the deck allows
        items += await _fill(state, conn, ask, limit - len(items), set(ids), ["popular"])
    state.record(user_id, version, source, [i["video_id"] for i in items], ask.deck_id)
    return _body(user_id, version, source, items, t0)


def deal(ranked: list[dict], explored: list[dict], limit: int) -> list[dict]:
    """Exploration's (or the fading onboarding's) cards at evenly spread positions (j * (n + 1) // (e + 1) for the j-th of e
    in a deck of n), the ranked ones in order around them, as twotower.recommend deals them."""
    total = min(len(ranked), limit - len(explored)) + len(explored)
    at = {j * (total + 1) // (len(explored) + 1): x for j, x in enumerate(explored, 1)}
    rest = iter(ranked)
    return [at[pos] if pos in at else next(rest) for pos in range(1, total + 1)]


def _body(user_id: str, version: str | None, source: str, items: list[dict], t0: float) -> dict:
    return {"user_id": user_id, "model_version": version, "source": source, "items": items, "took_ms": now_ms(t0)}


@functools.lru_cache(maxsize=4096)
def _statement(version: str, dim: int, k: int, exclude: bool, stored: bool, exact: bool) -> bytes:
    """The search statement with its structural values as literals (quoted by psycopg): one
    prepared generic plan per (version, k, variant) and connection. Rendered once to bytes:
    composing it again on every request cost a tenth of a millisecond."""
    d, ver = psql.Literal(dim), psql.Literal(version)
    if stored:
        prelude = psql.SQL(sql("serve_stored_prelude")).format(dim=d, version=ver)
        q, guard = psql.SQL("(SELECT q FROM u)"), psql.SQL("EXISTS (SELECT 1 FROM u)")
    else:
        prelude, q, guard = psql.SQL(""), psql.SQL("%(q)s::vector({})").format(d), psql.SQL("true")
    order = psql.SQL("e.embedding::vector({}) <#> {}").format(d, q)
    if exact:
        order = psql.SQL("({}) + 0").format(order)
    skip = psql.SQL("\n      AND NOT EXISTS (SELECT 1 FROM src_decisions d "
                    "WHERE d.user_key = twotower.user_key(%(user_id)s) "
                    "AND d.video_key = twotower.video_key(e.video_id))") if exclude else psql.SQL("")
    return psql.SQL(sql("serve_recommend")).format(prelude=prelude, q=q, guard=guard, dim=d, version=ver,
                                                   k=psql.Literal(k), exclude=skip, order=order).as_bytes(None)


async def _search(conn, art: Artifacts, ask: Ask, params: dict, q: np.ndarray | None,
                  iterative: bool = True) -> list[tuple]:
    """Candidates then the likes row; q None: the stored vector if it is fresh (no rows otherwise).
    Without iterative scans (pgvector < 0.8) the filtered search over-fetches: ef_search and the
    LIMIT grow fourfold until `limit` undecided videos come back or OVERFETCH_MAX is reached."""
    limit, exclude = ask.limit, ask.exclude
    params = dict(params)
    if q is not None:
        params["q"] = q.astype(np.float32)
    if iterative:
        stmt = _statement(art.version, art.dim, limit, exclude, q is None, False)
        rows = await (await conn.execute(stmt, params, binary=True)).fetchall()  # binary: no text parsing
    else:
        n = limit
        while True:
            n = min(OVERFETCH_MAX, max(n * 4, 40))
            async with conn.transaction():  # the wider ef_search ends with it
                await conn.execute(*search_settings(n, 0, False))
                stmt = _statement(art.version, art.dim, n, exclude, q is None, False)
                rows = await (await conn.execute(stmt, params, binary=True)).fetchall()
            if not rows or _ranked(rows) >= limit or n >= OVERFETCH_MAX:
                break
        if _ranked(rows) > limit:  # the best `limit`, exploration's picks, then the likes row
            rows = [r for r in rows[:-1] if not r[3]][:limit] + [r for r in rows[:-1] if r[3]] + rows[-1:]
    if rows and _ranked(rows) < limit:
        # Still short after the bounded scan: exact search over what the deck allows.
        stmt = _statement(art.version, art.dim, limit, exclude, q is None, True)
        rows = await (await conn.execute(stmt, params, binary=True)).fetchall()
    return rows


def _ranked(rows: list[tuple]) -> int:
    """Ranked rows of a search answer (not exploration's picks, not the likes row)."""
    return sum(1 for r in rows if r[3] is False)


SEGMENT_REASON = ["popular in your age group and region"]


async def _fill(state: ServiceState, conn, ask: Ask, n: int, taken: set[str], reasons: list[str],
                pop: list[tuple[str, float, list[str]]] | None = None) -> list[dict]:
    """Popular videos the deck allows (`pop`, else the global list), then (nothing else left)
    the oldest impressions."""
    pop = pop if pop is not None else [(v, s, reasons) for v, s in state.popular]
    params = ask.params(state) | {"decided": ask.exclude, "candidates": [v for v, _, _ in pop]}
    skip = taken | {r[0] for r in await (await conn.execute(sql("serve_decided"), params)).fetchall()}
    items = [{"video_id": v, "score": s, "reasons": why} for v, s, why in pop if v not in skip][:n]
    if len(items) < n:
        have = list(taken | {i["video_id"] for i in items})
        rows = await (await conn.execute(sql("serve_seen"), {"user_id": ask.user_id, "deck": ask.deck_id,
                                                             "taken": have, "n": n - len(items)})).fetchall()
        items += [{"video_id": r[0], "score": 0.0, "reasons": ["seen before"]} for r in rows]
    return items


async def _popular(state: ServiceState, conn, ask: Ask, source: str, version: str | None, t0: float) -> dict:
    """The cold-start list: the user's segment's popular videos first where it has a list (the
    demographic cold start, as recommend_videos), then the global ones."""
    pop = None
    if state.segments:
        seg = (await (await conn.execute("SELECT twotower.segment_of(%s)", (ask.user_id,))).fetchone())[0]
        if seg in state.segments:
            own = state.segments[seg]
            mine = {v for v, _ in own}
            pop = [(v, s, SEGMENT_REASON) for v, s in own] + \
                  [(v, s, ["popular and recent"]) for v, s in state.popular if v not in mine]
    items = await _fill(state, conn, ask, ask.limit, set(), ["popular and recent"], pop)
    state.record(ask.user_id, version, source, [i["video_id"] for i in items], ask.deck_id)
    return _body(ask.user_id, None, source, items, t0)


def fallback(state: ServiceState, user_id: str, limit: int, t0: float) -> dict:
    """Database unreachable: the in-memory popularity list, never a 500."""
    items = [{"video_id": v, "score": s, "reasons": ["popular (service degraded)"]} for v, s in state.popular[:limit]]
    return _body(user_id, None, "fallback", items, t0)


async def refresh_user(state: ServiceState, conn, user_id: str) -> list[str]:
    """Recompute and store the user's vector for every active version; [] for an unknown user."""
    hist = max((a.pipeline.max_history for a in state.models.values()), default=200)
    j = await user_features(conn, user_id, hist)
    if j is None:
        return []
    done = []
    for version, _ in state.shares:
        art = state.models[version]
        await store_user_vector(conn, version, user_id, user_vectors_from_json(art, [j])[0])
        done.append(version)
    return done
