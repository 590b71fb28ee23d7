"""What a running service holds: the async pool, the loaded model versions (manifest verified,
ONNX sessions created once), the A/B assignment, the popularity cache used for cold start and
for the database-down fallback, and the batched recommendation log."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from twotower import db
from twotower.config import Config, Settings
from twotower.db import sql
from twotower.errors import ArtifactError, TwotowerError
from twotower.export import Artifacts, load_artifacts
from twotower.serve.reasons import ReasonIndex

log = logging.getLogger("twotower.serve")
# What a request sees when the database (or its connection to it) is gone. TimeoutError (the
# request budget) is an OSError.
DB_DOWN = (psycopg.OperationalError, PoolTimeout, OSError)


@dataclass
class ServiceState:
    settings: Settings
    cfg: Config
    pool: AsyncConnectionPool | None = None
    url: str = ""
    models: dict[str, Artifacts] = field(default_factory=dict)
    shares: list[tuple[str, float]] = field(default_factory=list)  # active versions, sorted
    popular: list[tuple[str, float]] = field(default_factory=list)
    explore_asked: bool = False  # a request asked for exploration: keep its pool fresh
    segments: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # demographic cold start
    reasons: ReasonIndex = field(default_factory=ReasonIndex.empty)
    reasons_mark: tuple | None = None  # (videos, last video change) the index was built at
    db_ok: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # active versions that could not load
    iterative: bool = True  # pgvector >= 0.8 (iterative index scans); else over-fetching
    _wake: asyncio.Event = field(default_factory=asyncio.Event)  # run the database probe now
    log_queue: asyncio.Queue | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)
    ops: list[tuple] = field(default_factory=list)  # ops_metrics.sql rows, for /metrics
    log_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # log writes vs account deletion
    # Served lists still queued for the database, per user: the deck filter adds them to what the
    # database knows, so the very next request of that user skips them too (in this process).
    pending: dict[str, list[tuple]] = field(default_factory=dict)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        url = self.url = db.database_url(self.settings)
        e = self.cfg.embedding
        last_used: dict[int, float] = {}

        async def configure(conn: psycopg.AsyncConnection) -> None:
            # Same search settings on every pooled connection (DESIGN §10 allows the pool's
            # configure): nothing per request, and nothing leaks between users.
            await register_vector_async(conn)
            # Generic plans: the search statement carries version, dimension and k as literals,
            # so its one cached plan is the right one and no request pays for planning.
            await conn.execute("SELECT set_config('hnsw.ef_search', %s, false), "
                               "set_config('plan_cache_mode', 'force_generic_plan', false), "
                               "set_config('search_path', %s, false)",  # also where a pooler dropped it
                               (str(e.ef_search), db.SEARCH_PATH))
            if self.iterative:  # pgvector >= 0.8; older ones over-fetch (recommend._search)
                await conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', false), "
                                   "set_config('hnsw.max_scan_tuples', %s, false)", (str(e.max_scan_tuples),))
            await conn.commit()
            # Autocommit: a request pays no BEGIN/COMMIT round trips; the few statements that
            # need SET LOCAL open an explicit transaction.
            await conn.set_autocommit(True)

        async def check(conn: psycopg.AsyncConnection) -> None:
            # Test a connection that sat idle (it may have died with a database restart); one
            # handed out a moment ago is fine, and skipping the round trip matters at 500
            # requests/s. (Noted at checkout: a `reset` callback would send every return
            # through the pool's worker task, which costs each request more than it saves.)
            now = time.monotonic()
            if now - last_used.get(id(conn), 0.0) > 2.0:
                await AsyncConnectionPool.check_connection(conn)
            last_used[id(conn)] = now

        budget = self.cfg.serving.request_timeout_seconds
        self.iterative = await self._check_session(url)
        self.pool = db.AsyncPool(url, min_size=self.settings.pool_min, max_size=self.settings.pool_max,
                                 configure=configure, check=check, open=False, timeout=budget,
                                 kwargs={"connect_timeout": max(1, round(budget)), **db.conn_kwargs(url)})
        await self.pool.open(wait=True, timeout=30)
        self.db_ok = True
        await self.warn_if_not_durable()
        await self.refresh_models(initial=True)
        await self.refresh_popular()
        await self.refresh_reasons()
        try:
            await self.refresh_ops()
        except Exception as e:  # gauges are not worth a failed start
            log.warning("operations gauges not read: %s", e)
        await self.warm_up()
        self.log_queue = asyncio.Queue(maxsize=100_000)
        sv = self.cfg.serving
        self.tasks = [asyncio.create_task(self._loop(self.refresh_models, sv.models_refresh_seconds)),
                      asyncio.create_task(self._loop(self.refresh_popular, sv.popular_refresh_seconds)),
                      asyncio.create_task(self._loop(self.refresh_reasons, sv.reasons_refresh_seconds)),
                      asyncio.create_task(self._probe_loop()),
                      asyncio.create_task(self._loop(self.refresh_ops, sv.ops_refresh_seconds)),
                      asyncio.create_task(self._flush_logs())]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.log_queue is not None:
            await self._write_logs(self._drain())
        if self.pool is not None:
            await self.pool.close()

    async def refresh_ops(self) -> None:
        """Batch and staleness gauges from SQL, in the background (never per request)."""
        if self.db_ok:
            self.ops = await self.run(lambda conn: _fetchall(conn, sql("ops_metrics")))

    async def _loop(self, fn, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await fn()
            except Exception as e:  # a background refresh must never kill the service
                log.warning("background %s failed: %s", fn.__name__, e)

    # ------------------------------------------------------------------ the database, carefully
    async def run(self, fn):
        """`await fn(conn)` on a pooled connection within the request budget. A connection that
        turns out dead (database restarted, backend terminated) is dropped with every other dead
        one in the pool, and the call retried, twice at most: a connection that was busy during
        the check (so not checked) can come back to the pool dead and be the one handed to the
        retry. A dead connection fails at once, so retries cost little, and dead connections
        never fail a request while the database is up. Raises a DB_DOWN error when the database is really unreachable.
        Callers retry only idempotent work (reads, upserts)."""
        async with asyncio.timeout(self.cfg.serving.request_timeout_seconds):
            for attempt in (0, 1, 2):
                try:
                    async with self.pool.connection() as conn:
                        return await fn(conn)
                except PoolTimeout:
                    self._wake.set()
                    raise
                except (psycopg.OperationalError, OSError):
                    if attempt == 2:
                        self._wake.set()  # let the probe decide whether the database is down
                        raise
                    # Its siblings probably died with it. Checking them one by one at checkout
                    # would back off (psycopg_pool sleeps 1 s, then 2 s between failed checks).
                    await self.pool.check()

    async def _probe_loop(self) -> None:
        """The only place that decides the database is down (fallback on) or back (fallback off):
        every second while it is up, every 0.2 s while it is down, and at once when a request
        could not reach it."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0 if self.db_ok else 0.2)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.check_db()
            except Exception as e:  # the probe must never stop
                log.warning("database probe failed: %s", e)

    async def check_db(self) -> None:
        if self.db_ok:
            try:
                await self.run(lambda conn: conn.execute("SELECT 1"))
            except DB_DOWN:
                log.error("database unreachable: serving the in-memory popularity fallback")
                self.db_ok = False
            return
        # Down: ask the server directly, not the pool, whose reconnect attempts back off.
        try:
            async with await psycopg.AsyncConnection.connect(self.url, connect_timeout=1) as conn:
                await conn.execute("SELECT 1")
        except (psycopg.Error, OSError):
            return
        log.warning("database is reachable again")
        await self.pool.check()  # pooled connections from before the outage are dead: drop them now
        self.db_ok = True

    async def _check_session(self, url: str) -> bool:
        """Refuse, in one line, a database the service cannot use: unreachable, or behind a
        transaction-mode pooler (its per-connection settings and prepared statements would fail
        at random under load: 500s while /readyz said ready)."""
        pooler = self.cfg.database.pooler
        db.check_url(url, pooler)
        try:
            async with await psycopg.AsyncConnection.connect(url, connect_timeout=5, **db.conn_kwargs(url)) as conn:
                if pooler == "session":
                    await conn.execute(db.SET_SEARCH_PATH, (db.SEARCH_PATH,))
                db.check_session((await (await conn.execute("SHOW search_path")).fetchone())[0], pooler)
                row = await (await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).fetchone()
        except psycopg.OperationalError as e:
            raise db.connect_error(url, e) from None
        version = db.parse_version(row[0]) if row else None
        iterative = db.require_hnsw(version)  # refuses pgvector without HNSW in one line
        if not iterative:
            log.warning("pgvector %s has no iterative index scans: filtered searches over-fetch (slower); "
                        "upgrade to 0.8.4 or later", row[0])
        return iterative

    async def warn_if_not_durable(self) -> None:
        """A 2xx on a write means committed to disk: say so loudly when the server or the role
        has synchronous_commit off (a crash would then lose acknowledged decisions)."""
        async with self.pool.connection() as conn:
            value = (await (await conn.execute("SHOW synchronous_commit")).fetchone())[0]
        if value == "off":
            log.warning("synchronous_commit is off for this server or role: a crash can lose decisions "
                        "that were already acknowledged. Turn it on (ALTER ROLE ... SET synchronous_commit = on)")

    # ------------------------------------------------------------------ models and A/B
    async def refresh_models(self, initial: bool = False) -> None:
        """Load every active version once (new ones only); read the traffic split. A version whose
        artifacts do not verify is left out of the traffic and reported (`failed`, /readyz); at
        start-up, if no active version loads, the service refuses to start."""
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT version, model_path, traffic_share FROM embedding_model_versions "
                "WHERE is_active AND traffic_share > 0 ORDER BY version")).fetchall()
        for version, path, _ in rows:
            if version not in self.models and version not in self.failed:
                try:
                    self.models[version] = await asyncio.to_thread(load_artifacts, Path(path), 1)
                    log.info("loaded model %s from %s", version, path)
                except TwotowerError as e:
                    self.failed[version] = str(e)
                    log.error("model %s is not served: %s", version, e)
        if initial and rows and not any(v in self.models for v, _, _ in rows):
            raise ArtifactError("no active model version could be loaded: "
                                + "; ".join(f"{v}: {m}" for v, m in self.failed.items()))
        self.shares = [(v, float(s)) for v, _, s in rows if v in self.models]

    def assign(self, user_id: str) -> str | None:
        """Stable A/B assignment: hash(salt, user_id) -> [0, 1) against cumulative shares."""
        if len(self.shares) <= 1:  # no experiment running: nothing to hash
            return self.shares[0][0] if self.shares else None
        h = hashlib.sha256(f"{self.settings.ab_salt}:{user_id}".encode()).digest()
        x = int.from_bytes(h[:8], "big") / 2**64
        total = sum(s for _, s in self.shares)
        acc = 0.0
        for version, share in self.shares:
            acc += share / total
            if x < acc:
                return version
        return self.shares[-1][0]

    async def warm_up(self) -> None:
        """One inference per loaded model, so the first request pays no lazy initialisation."""
        import numpy as np

        for art in self.models.values():
            art.embed_users(np.zeros((1, art.pipeline.user_feature_dim), np.float32), np.full((1, 1), -1))

    # ------------------------------------------------------------------ popularity cache
    async def refresh_popular(self, n: int = 500) -> None:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(sql("serve_popular"), {"n": n})).fetchall()
            # the SQL path's popular_cache too (onboarding ranks the picks' videos by it), at most
            # every 5 minutes as recommend_videos does; exploration's pool of new videos (at most
            # once a minute) where exploration is on: the installation's explore_share, or a
            # request that asked for a share
            await conn.execute("SELECT twotower.refresh_popular(interval '5 minutes')")
            await conn.execute("SELECT twotower.refresh_explore(interval '1 minute') "
                               "WHERE %s OR twotower.explore_count(100) > 0", (self.explore_asked,))
            seg = await (await conn.execute("SELECT segment, video_id, score FROM segment_popular "
                                            "ORDER BY segment, score DESC, video_id")).fetchall()
        segments: dict[str, list[tuple[str, float]]] = {}
        for name, v, score in seg:
            segments.setdefault(name, []).append((v, float(score)))
        self.popular = [(v, float(s)) for v, s in rows]
        self.segments = segments

    # ------------------------------------------------------------------ reasons
    async def refresh_reasons(self) -> None:
        """Reload the video -> tags/performers index off the event loop, then swap it in; only
        when the catalogue changed, as a rebuild at 1M videos holds the interpreter for a while."""
        async with self.pool.connection() as conn:
            mark = await (await conn.execute(sql("serve_catalog_mark"))).fetchone()
        if mark == self.reasons_mark:
            return

        def load() -> ReasonIndex:
            with db.connection(url=self.url) as conn:
                return ReasonIndex.load(conn)

        t0 = time.perf_counter()
        self.reasons, self.reasons_mark = await asyncio.to_thread(load), mark
        log.info("reasons index: %d videos in %.1f s", self.reasons.videos, time.perf_counter() - t0)

    # ------------------------------------------------------------------ recommendation log
    def record(self, user_id: str, version: str | None, source: str, video_ids: list[str],
               deck_id: str | None = None) -> None:
        """Queue a served list for recommendation_log and impressions (written within a second)."""
        if self.log_queue is not None:
            item = (user_id, version, source, video_ids, datetime.now(UTC), deck_id)
            try:
                self.log_queue.put_nowait(item)
            except asyncio.QueueFull:  # never block a request for the log
                return
            self.pending.setdefault(user_id, []).append(item)

    def pending_impressions(self, user_id: str, impressions: bool, deck_id: str | None) -> list[str]:
        """The user's served cards not yet in the database that the deck filter must skip."""
        items = self.pending.get(user_id)
        if not items:
            return []
        return [v for it in items if impressions or (deck_id is not None and it[5] == deck_id) for v in it[3]]

    def _written(self, items: list[tuple]) -> None:
        for it in items:
            left = [x for x in self.pending.get(it[0], []) if x is not it]
            if left:
                self.pending[it[0]] = left
            else:
                self.pending.pop(it[0], None)

    def forget_pending(self, user_id: str) -> None:
        """Drop a user's served lists still queued for the database (account deletion)."""
        kept = [x for x in self._drain() if x[0] != user_id]
        for x in kept:
            self.log_queue.put_nowait(x)
        self.pending.pop(user_id, None)

    def _drain(self) -> list[tuple]:
        items = []
        while self.log_queue is not None and not self.log_queue.empty():
            items.append(self.log_queue.get_nowait())
        return items

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            items = self._drain()
            if items:
                try:
                    await self._write_logs(items)
                except Exception as e:
                    log.warning("could not write %d recommendation log rows: %s", len(items), e)

    async def _write_logs(self, items: list[tuple]) -> None:
        try:
            if items and self.db_ok:
                await self._copy_logs(items)
        finally:  # written or lost: either way no longer pending in memory
            self._written(items)

    async def _copy_logs(self, items: list[tuple]) -> None:
        async with self.log_lock, self.pool.connection() as conn, conn.cursor() as cur:
            async with conn.transaction():
                async with cur.copy("COPY recommendation_log (user_id, model_version, source, video_ids, served_at) "
                                    "FROM STDIN") as cp:
                    for row in items:
                        await cp.write_row((*row[:3], text_array(row[3]), row[4]))  # off the request path
                # one row per served card, sent as array literals: psycopg's list dumper (per
                # element, in Python) took a fifth of the server's CPU under load
                cards = [(u, t, deck, v) for u, _, _, vids, at, deck in items for t in (at.isoformat(),) for v in vids]
                if cards:
                    users, times, decks, videos = zip(*cards, strict=True)
                    await cur.execute(sql("serve_impressions"), {"users": text_array(users), "videos": text_array(videos),
                                                                 "times": text_array(times), "decks": text_array(decks)})


def text_array(values: Iterable[str | None]) -> str:
    """A PostgreSQL array literal of text (None: NULL): one COPY field, or one parameter cast in
    SQL, instead of a list psycopg dumps element by element in Python."""
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def now_ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


async def _fetchall(conn, query: str) -> list[tuple]:
    cur = await conn.execute(query)
    return await cur.fetchall()
