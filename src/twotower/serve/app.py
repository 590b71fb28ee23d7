"""`create_app(settings)`: the FastAPI service. The lifespan opens the pool, loads the active
model version(s) once (manifest verified) and warms up; routes take typed dependencies."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException

from twotower.config import Config, Settings, load_config
from twotower.errors import TwotowerError
from twotower.serve import dashboard, routes, routes_deck
from twotower.serve.auth import Authenticator
from twotower.serve.edge import EdgeError, problem, validation_problem
from twotower.serve.hotpath import RecommendationsHotPath
from twotower.serve.state import ServiceState

access_log = logging.getLogger("twotower.access")
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """Prometheus metrics in the app's own registry (several apps can live in one process)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.latency = Histogram("twotower_request_seconds", "request latency", ["endpoint", "source"],
                                 buckets=BUCKETS, registry=r)
        self.in_flight = Gauge("twotower_requests_in_flight", "requests being served", registry=r)
        self.errors = Counter("twotower_errors_total", "responses with status >= 400", ["endpoint", "status"],
                              registry=r)
        self.traffic = Gauge("twotower_model_traffic_share", "active model versions", ["version"], registry=r)
        self.pool = Gauge("twotower_db_pool_connections", "database pool", ["state"], registry=r)
        self.db_up = Gauge("twotower_database_up", "1 when the database answers", registry=r)
        # Batch jobs and embedding staleness, read from batch_runs and the embedding tables by
        # the service in the background (so one scrape target covers the batch process too).
        g = lambda name, doc, labels: Gauge(name, doc, labels, registry=r)  # noqa: E731
        self.batch_last_success = g("twotower_batch_last_success_timestamp_seconds", "last successful run", ["job"])
        self.batch_last_failed = g("twotower_batch_last_failed", "1 when the latest finished run failed", ["job"])
        self.batch_duration = g("twotower_batch_last_duration_seconds", "the latest finished run's duration", ["job"])
        self.batch_failures = g("twotower_batch_failures_24h", "failed runs in the last 24 hours", ["job"])
        self.stale_users = g("twotower_stale_user_embeddings", "users whose vector predates their last decision",
                             ["version"])
        self.users_embedded = g("twotower_user_embeddings", "users with a stored vector", ["version"])
        self.videos_missing = g("twotower_videos_without_embedding", "videos without a vector", ["version"])

    def update_gauges(self, s: ServiceState) -> None:
        self.traffic.clear()
        for v, share in s.shares:
            self.traffic.labels(v).set(share)
        self.db_up.set(1 if s.db_ok else 0)
        for gauge in (self.batch_last_success, self.batch_last_failed, self.batch_duration, self.batch_failures,
                      self.stale_users, self.users_embedded, self.videos_missing):
            gauge.clear()
        for kind, key, a, b, c, d in s.ops:
            if kind == "job":
                for gauge, value in ((self.batch_last_success, a), (self.batch_last_failed, b),
                                     (self.batch_duration, c), (self.batch_failures, d)):
                    if value is not None:
                        gauge.labels(key).set(float(value))
            else:
                self.stale_users.labels(key).set(a)
                self.users_embedded.labels(key).set(b)
                self.videos_missing.labels(key).set(c)
        if s.pool is not None:
            st = s.pool.get_stats()
            self.pool.labels("size").set(st.get("pool_size", 0))
            self.pool.labels("available").set(st.get("pool_available", 0))
            self.pool.labels("waiting").set(st.get("requests_waiting", 0))


class Observe:
    """Pure ASGI middleware (Starlette's BaseHTTPMiddleware costs a task per request): latency
    histogram by endpoint and source, in-flight gauge, error counter, JSON access log."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        m, t0, status = self.metrics, time.perf_counter(), [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        m.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            m.in_flight.dec()
            dt = time.perf_counter() - t0
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            source = scope.get("state", {}).get("source", "")
            m.latency.labels(endpoint, source).observe(dt)
            if status[0] >= 400:
                m.errors.labels(endpoint, str(status[0])).inc()
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(json.dumps({"method": scope["method"], "path": scope["path"], "status": status[0],
                                            "ms": round(dt * 1000, 2), "source": source or None}))


async def _refresh_jwks(auth: Authenticator, every: float) -> None:
    while auth.jwks_source:
        await asyncio.sleep(5)
        if auth.jwks_due(every):
            try:
                await asyncio.to_thread(auth.refresh_jwks)
            except ValueError as e:  # keep serving with the keys we have
                logging.getLogger("twotower.serve").warning("%s; keeping the previous keys", e)


class Service(FastAPI):
    """The FastAPI app, with the metrics middleware outermost (it sees every answer, FastAPI's own
    413s and 500s included) and the recommendations hot path just inside it, ahead of FastAPI's
    error, telemetry and body-limit layers, which it does for itself."""

    def __init__(self, hot_path: bool, **kw) -> None:
        self.hot_path = hot_path
        super().__init__(**kw)

    def build_middleware_stack(self):
        stack = super().build_middleware_stack()
        return _QuietStartup(Observe(RecommendationsHotPath(stack) if self.hot_path else stack, self.state.metrics))

    def openapi(self) -> dict:
        """FastAPI's document, plus what it cannot see: the request bodies the edge reads and
        the bearer scheme (so "Authorize" in /docs works)."""
        if self.openapi_schema:
            return self.openapi_schema
        doc = super().openapi()
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for m in (*routes.BODY_MODELS, *routes_deck.BODY_MODELS):
            s = m.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(s.pop("$defs", {}))
            schemas[m.__name__] = s
        doc["components"]["securitySchemes"] = {"bearer": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "A Supabase user JWT (its `sub` is the user), a service_role JWT, or the service key"}}
        for path, ops in doc["paths"].items():
            if path.startswith("/v1/"):
                for op in ops.values():
                    op["security"] = [{"bearer": []}]
        self.openapi_schema = doc
        return doc


class _QuietStartup:
    """uvicorn prints the lifespan's traceback when start-up fails; a TwotowerError (a bad
    model, no database) is one line for the operator, so the traceback is replaced by it."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)

        async def quiet_send(message) -> None:
            err = scope.get("app") and getattr(scope["app"].state, "startup_error", None)
            if message["type"] == "lifespan.startup.failed" and err:
                message = {**message, "message": err}
            await send(message)

        await self.app(scope, receive, quiet_send)


def create_app(settings: Settings | None = None, cfg: Config | None = None, hot_path: bool = True) -> FastAPI:
    """hot_path=False sends POST /v1/recommendations through FastAPI's route like the others
    (the parity test compares the two)."""
    settings = settings or Settings()
    cfg = cfg or load_config()
    # Pin math libraries to one thread per worker (DESIGN §10).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    auth = Authenticator(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = ServiceState(settings, cfg)
        try:
            await state.start()
        except TwotowerError as e:
            app.state.startup_error = f"twotower cannot start: {e}"
            raise
        app.state.service = state
        gc.freeze()  # the models and indexes loaded at start-up: out of the collector's way
        keys = asyncio.create_task(_refresh_jwks(auth, cfg.serving.jwks_refresh_seconds))
        yield
        keys.cancel()
        await state.stop()

    app = Service(hot_path, title="twotower", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  telemetry=None if settings.otel else {"tracing": False, "metrics": False, "logs": False},
                  description="Personalised like/nope video recommendations from a two-tower model in pgvector.")
    app.state.auth = auth
    app.state.metrics = Metrics()
    app.state.started_at = time.monotonic()
    for r in (routes.recommendations, routes.users, routes_deck.mutes, routes.decisions, routes.health,
              dashboard.router):
        app.include_router(r)
    _offline_docs(app)

    # One error shape everywhere, {"detail", "errors"}, as the edge writes it.
    @app.exception_handler(EdgeError)
    async def edge_error(request: Request, exc: EdgeError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):  # path parameters
        return JSONResponse(validation_problem(list(exc.errors())), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):  # unknown path, method
        return JSONResponse(problem(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception):
        logging.getLogger("twotower.serve").exception("unhandled error")
        return JSONResponse(problem("internal error"), status_code=500)

    return app


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc from assets shipped in a Python package
    (fastapi-offline: Swagger UI 5, which renders the OpenAPI 3.1 that FastAPI writes), not a
    CDN: the pages work on a machine without internet. "Authorize" takes the bearer token."""
    from pathlib import Path

    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="twotower API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> Response:
        return get_redoc_html(openapi_url="/openapi.json", title="twotower API",
                              redoc_js_url="/docs-assets/redoc.standalone.js",
                              redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False)
