"""`GET /dashboard`: what an operator needs on one page, server-rendered (HTML + inline SVG, no
JavaScript library, nothing from a CDN). Light on the serving path: nothing happens per
recommendation; the page is built at most once every `CACHE_SECONDS` from a few aggregate
queries (on a connection of its own, in a thread) and from the metrics registry, and its one
costly parts, the A/B join of served lists with later answers and the coverage of what was
served, at most once every `AB_SECONDS`; the staleness figures are the ones the service already
refreshes for /metrics in the background.

Who may see it: the service key or a `service_role` JWT as `Authorization: Bearer ...`. A
browser without one gets a 401 whose body is a sign-in form; the key stays in that tab's
sessionStorage and the page is fetched with it."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from twotower import db, registry
from twotower.db import sql
from twotower.evaluate import ab
from twotower.serve import dashboard_render as render
from twotower.serve.edge import EdgeError, header

CACHE_SECONDS = 5.0
AB_SECONDS = 60.0
AB_DAYS = 30
DAILY_DAYS = 14

router = APIRouter(include_in_schema=False)


@dataclass
class Latency:
    endpoint: str
    source: str
    count: int
    rate: float  # requests/s since the service started
    p50: float
    p95: float
    p99: float


@dataclass
class Page:
    generated_at: datetime
    database_up: bool
    loaded: list[str]
    failed: dict
    versions: list[registry.ModelVersion] = field(default_factory=list)
    arms: list[ab.Arm] = field(default_factory=list)
    control: str | None = None
    daily: dict[str, list[tuple[Any, ab.Arm]]] = field(default_factory=dict)  # version -> [(day, arm)]
    latency: list[Latency] = field(default_factory=list)
    sources: dict[str, float] = field(default_factory=dict)
    coverage: tuple[float, float] = (0.0, 0.0)
    runs: list[tuple] = field(default_factory=list)
    ops: list[tuple] = field(default_factory=list)
    importance: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    ab_read_at: datetime | None = None
    error: str | None = None


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """A quantile from cumulative histogram buckets [(upper bound, count)], interpolated within
    the bucket as Prometheus' histogram_quantile does; NaN without observations."""
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return float("nan")
    rank, lo, below = q * total, 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if math.isinf(le):
                return lo
            return lo + (le - lo) * ((rank - below) / (n - below) if n > below else 0)
        lo, below = le, n
    return lo


def latency_table(metrics, uptime: float) -> list[Latency]:
    """p50/p95/p99 and request rate by endpoint and source, from the latency histogram."""
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    counts: dict[tuple[str, str], float] = {}
    for fam in metrics.latency.collect():
        for s in fam.samples:
            key = (s.labels.get("endpoint", ""), s.labels.get("source", ""))
            if s.name.endswith("_bucket"):
                series.setdefault(key, []).append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                counts[key] = s.value
    out = []
    for key, b in series.items():
        if key[0] in ("/dashboard", "/metrics", "unmatched") or not counts.get(key):
            continue
        b.sort()
        out.append(Latency(key[0], key[1] or "-", int(counts[key]), counts[key] / max(uptime, 1e-9),
                           *(quantile(b, q) * 1000 for q in (0.5, 0.95, 0.99))))
    return sorted(out, key=lambda r: (-r.count, r.endpoint, r.source))


def collect(settings, state, ab_cache: dict | None = None) -> Page:
    """Everything the page shows, read on a connection of its own. The A/B part (the served
    lists of 30 days joined with the answers that followed) and the sources and coverage are
    read at most every AB_SECONDS and kept in `ab_cache` meanwhile."""
    page = Page(datetime.now(UTC), state.db_ok, sorted(state.models), dict(state.failed or {}))
    ab_cache = ab_cache if ab_cache is not None else {}
    try:
        with db.connect(settings, url=state.url) as conn:
            conn.execute("SET statement_timeout = '30s'")
            page.versions = registry.list_versions(conn)
            default = next((v.version for v in page.versions if v.is_default), None)
            if time.monotonic() - ab_cache.get("at", -math.inf) > AB_SECONDS:
                days = ab.per_user_day(conn, datetime.now(UTC) - timedelta(days=AB_DAYS))
                ab_cache.update(at=time.monotonic(), days=days, read_at=datetime.now(UTC),
                                overview=conn.execute(sql("dashboard_overview")).fetchall())
            page.ab_read_at = ab_cache["read_at"]
            page.arms = ab.report(ab.over_days(ab_cache["days"]), default)
            page.control = next((a.version for a in page.arms if not a.vs_control), None)  # the one compared with
            first_day = (datetime.now(UTC) - timedelta(days=DAILY_DAYS)).date()
            page.daily = daily_arms(ab_cache["days"].filter(pl.col("day") >= first_day))
            for kind, label, a, b in ab_cache["overview"]:
                if kind == "source":
                    page.sources[label] = a
                else:
                    page.coverage = (a or 0.0, b or 0.0)
            page.runs = conn.execute(sql("dashboard_batch_runs"), {"n": 12}).fetchall()
            page.ops = list(state.ops)  # what the service refreshes for /metrics in the background
            page.importance = {v.version: imp for v in page.versions
                               if v.is_active and (imp := registry.importance(conn, v.version))}
            conn.rollback()
    except Exception as e:  # a database that is down: the page says so instead of failing
        page.error = f"the database did not answer ({str(e).strip().splitlines()[0][:200]})"
    return page


def daily_arms(df: pl.DataFrame) -> dict[str, list[tuple[Any, ab.Arm]]]:
    """Per version, per day: the arm's totals and like rate / CTR with their intervals."""
    out: dict[str, list[tuple[Any, ab.Arm]]] = {}
    for (day,), g in sorted(df.group_by("day"), key=lambda kv: kv[0][0]):
        for arm in ab.report(g.drop("day"), None):
            out.setdefault(arm.version, []).append((day, arm))
    return out


def _authorised(request: Request) -> bool | None:
    """True for a service caller, False for a user token, None without a token."""
    raw = header(request.headers.raw, b"authorization")
    if not raw:
        return None
    return request.app.state.auth.principal(raw).service


@router.get("/dashboard")
async def dashboard(request: Request) -> Response:
    try:
        who = _authorised(request)
    except EdgeError as e:
        return HTMLResponse(render.sign_in(f"the key was refused: {e.detail}"), status_code=401,
                            headers={"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"})
    if who is None:
        return HTMLResponse(render.sign_in(None), status_code=401,
                            headers={"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"})
    if not who:
        return HTMLResponse(render.sign_in("this token is a user's: the dashboard needs the service key"),
                            status_code=403, headers={"Cache-Control": "no-store"})
    app = request.app
    cached = getattr(app.state, "dashboard_cache", None)
    now = time.monotonic()
    if cached is None or now - cached[0] > CACHE_SECONDS:
        state = app.state.service
        if not hasattr(app.state, "dashboard_ab"):
            app.state.dashboard_ab = {}
        page = await asyncio.to_thread(collect, state.settings, state, app.state.dashboard_ab)
        page.latency = latency_table(app.state.metrics, now - app.state.started_at)
        cached = app.state.dashboard_cache = (now, render.page(page))
    return HTMLResponse(cached[1], headers={"Cache-Control": "no-store"})
