"""Builds the ASGI application from its parts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gatehouse.audit import checkpoints
from gatehouse.config import Settings
from gatehouse.dataplane.admin import AdminApi
from gatehouse.dataplane.auth import KeyTable
from gatehouse.dataplane.enforced import Enforced, PolicyFollower, worker_id
from gatehouse.dataplane.errors import ApiError
from gatehouse.dataplane.gateway import Gateway
from gatehouse.dataplane.incident_admin import IncidentAdminApi
from gatehouse.dataplane.leaks import LeakReports, load_github_keys
from gatehouse.dataplane.policy_admin import PolicyAdminApi
from gatehouse.dataplane.records import RecordWriter
from gatehouse.engines.base import Engine
from gatehouse.engines.build import build_engines
from gatehouse.errors import GatehouseError
from gatehouse.identity.service import as_utc
from gatehouse.monitoring.evaluate import evaluate, prune_usage
from gatehouse.monitoring.usage import UsageRollup, write_rows
from gatehouse.policy import control
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.store.db import Database
from gatehouse.telemetry import exposition
from gatehouse.telemetry.gateway_metrics import GatewayMetrics
from gatehouse.telemetry.tracing import Tracing, enabled_by_environment, finish_trace

log = logging.getLogger("gatehouse")
REFRESH_INTERVAL = 0.2  # seconds between checks for key and identity changes
REVIEW_ENFORCE_INTERVAL = 60.0  # seconds between closing access reviews past their due date
USAGE_WRITE_INTERVAL = 5.0  # seconds between writes of this worker's per-minute counts


def _announce_shutdown_to(engines: Callable[[], Iterable[Engine]]) -> Callable[[], None]:
    """Chain onto the server's SIGTERM/SIGINT handlers so engines hear of a shutdown when it
    starts: uvicorn first waits for open requests, and requests queued in an engine should be
    answered 503 at once rather than be served or cut off later. Returns a function that restores
    the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: Any) -> None:
        for engine in engines():
            engine.begin_shutdown()
        chained = previous[signum]
        if callable(chained):
            chained(signum, frame)
        else:  # no server handler: behave as the signal would have without us
            signal.signal(signum, chained if chained is not None else signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


async def _not_found(request: Request, exc: Exception) -> Response:
    return ApiError(404, f"no route {request.method} {request.url.path}", "not_found").response()


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return ApiError(405, f"method {request.method} is not allowed on {request.url.path}", "method_not_allowed").response()


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return ApiError(500, "internal error; see the gateway log", "internal_error").response()


class HotPath:
    """Sends POSTs to the inference endpoints straight to their handlers, past Starlette's
    middleware stack and router; everything else (and the lifespan) goes to ``app``.

    Those layers cost about a tenth of a worker's CPU at thousands of requests per second
    (ADR 0007); the handlers already turn every expected failure into an OpenAI error.
    """

    def __init__(self, app: Starlette, handlers: dict[str, Any]) -> None:
        self.app = app
        self.handlers = handlers
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except Exception:
            response = await _server_error(request, Exception())
        await response(scope, receive, send)


def _active_policy(db: Database, home: Path) -> tuple[CompiledPolicy, int, datetime | None]:
    """The version the store says is active (``gatehouse serve`` makes sure there is one), the
    policy counter it was read at, and when it expires if it is a break-glass version."""
    with db.read() as session:
        revision = control.policy_revision(session)
    active = control.active_policy(db)
    if active is None:
        raise GatehouseError("no policy version is active: start the gateway with `gatehouse serve`")
    loaded, activation = active
    expires = as_utc(activation.expires_at) if activation.kind == "break-glass" else None
    return CompiledPolicy(loaded).prepare(home), revision, expires


async def _every(seconds: float, what: str, work: Callable[[], Awaitable[Any]]) -> None:
    """Run ``work`` every ``seconds`` until cancelled. A failure is logged by its type only (a
    message could carry a secret or a connection string) and the next run goes ahead."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception as exc:
            log.error("%s failed: %s", what, type(exc).__name__)


def create_app(settings: Settings | None = None) -> HotPath:
    settings = settings or Settings.from_env()
    db = Database(settings.database_url)
    policy, policy_revision, expires_at = _active_policy(db, settings.home)
    keys = KeyTable(settings.pepper())

    def defined(alias: str) -> bool:  # an alias of the enforced policy (follower: assigned below, before any request)
        return follower.current.policy.has_alias(alias)

    worker = worker_id()
    usage_metrics = GatewayMetrics(defined)
    usage = UsageRollup(worker, defined)
    tracing = Tracing(worker, defined) if enabled_by_environment() else None
    # finish_trace first: it takes the trace out of the record before the record is stored
    records = RecordWriter(db, observers=[finish_trace, usage_metrics.observe, usage.observe])
    engines, _ = build_engines(policy.deployments, settings)
    enforced = Enforced(policy, engines)
    gateway = Gateway(enforced, keys, records, settings.max_body_bytes, tracing)
    admin = AdminApi(db, settings.pepper(), settings, lambda: follower.current.policy)
    follower = PolicyFollower(db, settings, enforced, policy_revision, expires_at=expires_at, on_swap=[
        lambda new: setattr(gateway, "enforced", new)])
    policy_admin = PolicyAdminApi(db, settings.pepper(), settings)
    incident_admin = IncidentAdminApi(db, settings.pepper(), settings)
    leaks = LeakReports(db, settings, settings.pepper(), load_github_keys(os.environ.get("GATEHOUSE_GITHUB_SCANNING_KEYS")))

    signing_key = settings.audit_signing_key(create=True)
    checkpoints.configure(signing_key, settings.audit_checkpoint_every)

    def checkpoint() -> None:
        with db.write() as session:
            checkpoints.checkpoint_now(session, signing_key)

    async def refresh_engine_gauges() -> None:
        for engine in follower.engines():
            metrics = getattr(engine, "metrics", None)
            if metrics is not None:
                metrics.refresh()

    async def enforce_reviews() -> None:
        from gatehouse.identity.governance import enforce_reviews

        suspended = await asyncio.to_thread(enforce_reviews, db)
        if suspended:
            log.warning("access review past due: suspended %s", ", ".join(suspended))

    writing_usage = threading.Lock()  # the last write at shutdown waits for one still running

    def write_usage_rows(rows: list[dict[str, Any]]) -> None:
        with writing_usage:
            write_rows(db, rows)

    async def write_usage() -> None:
        rows, minutes = usage.take()
        try:
            await asyncio.to_thread(write_usage_rows, rows)
        except Exception:
            usage.retry(minutes)
            raise

    async def evaluate_thresholds() -> None:
        policy = follower.current.policy
        thresholds = policy.loaded.document.monitoring.thresholds
        if thresholds:
            opened = await asyncio.to_thread(evaluate, db, thresholds, policy.version, settings, None,
                                             settings.monitor_interval)
            if opened:
                log.warning("threshold crossed: opened %s", ", ".join(opened))

    background = [  # (seconds between runs, what, work); a failure is logged and the next run goes ahead
        (REFRESH_INTERVAL, "key table refresh", lambda: asyncio.to_thread(keys.refresh, db)),  # keep the last good table
        # apart from keys: loading a model for a new policy version must not delay a revocation
        (REFRESH_INTERVAL, "policy refresh", follower.poll),  # keep enforcing the last good version
        (REVIEW_ENFORCE_INTERVAL, "review enforcement", enforce_reviews),
        (settings.audit_checkpoint_minutes * 60, "audit checkpoint", lambda: asyncio.to_thread(checkpoint)),
        (control.HEARTBEAT_INTERVAL, "worker heartbeat", lambda: asyncio.to_thread(follower.heartbeat)),
        (min(USAGE_WRITE_INTERVAL, settings.monitor_interval), "usage counts", write_usage),
        (settings.monitor_interval, "threshold evaluation", evaluate_thresholds),
        (3600.0, "usage pruning", lambda: asyncio.to_thread(prune_usage, db)),
    ]
    if exposition.multiprocess():
        background.append((1.0, "engine gauges", refresh_engine_gauges))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(keys.refresh, db)
        for engine in engines.values():
            await engine.start()
        records.start(keys.take_last_used)
        try:  # report in at once, then every HEARTBEAT_INTERVAL
            await asyncio.to_thread(follower.heartbeat)
        except Exception as exc:
            log.error("worker heartbeat failed: %s", type(exc).__name__)
        tasks = [asyncio.create_task(_every(seconds, what, work)) for seconds, what, work in background]
        restore_signals = _announce_shutdown_to(follower.engines)
        log.info("gatehouse ready: policy %s, %d deployments, %d keys", policy.version, len(engines), len(keys))
        try:
            yield
        finally:
            restore_signals()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await follower.close()
            for engine in follower.engines():  # drains running generations first
                await engine.close()
            await records.stop(keys.take_last_used)
            with contextlib.suppress(Exception):
                await write_usage()
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)
            db.dispose()
            exposition.worker_exited(os.getpid())

    async def health(request: Request) -> Response:
        # Whether the active version could be loaded, not why: the reason (a credential's
        # variable name, a file path) is for `policy status`, which needs a role.
        return JSONResponse({"status": "ok", "policy_version": follower.current.policy.version,
                             "policy_current": follower.problem is None, "keys_revision": keys.revision,
                             "worker": follower.worker, "worker_pid": os.getpid()})

    async def metrics(request: Request) -> Response:
        return Response(await asyncio.to_thread(exposition.render), media_type=exposition.CONTENT_TYPE)

    routes = [
        Route("/healthz", health),
        Route("/metrics", metrics),
        Route("/v1/models", gateway.list_models),
        Route("/v1/models/{model:path}", gateway.get_model),
        Route("/v1/chat/completions", gateway.chat_completions, methods=["POST"]),
        Route("/v1/completions", gateway.completions, methods=["POST"]),
        Route("/v1/embeddings", gateway.embeddings, methods=["POST"]),
        Route("/admin/leaks", leaks.post, methods=["POST"]),
        Route("/admin/inventory", admin.inventory),
        Route("/admin/findings", admin.findings),
        Route("/admin/credential-report", admin.credential_report),
        Route("/admin/policy/status", policy_admin.status),
        Route("/admin/policy/versions", policy_admin.versions),
        Route("/admin/policy/versions", policy_admin.propose, methods=["POST"]),
        Route("/admin/policy/versions/{ref}", policy_admin.version),
        Route("/admin/policy/versions/{ref}/plan", policy_admin.plan),
        Route("/admin/policy/versions/{ref}/approve", policy_admin.approve, methods=["POST"]),
        Route("/admin/policy/versions/{ref}/reject", policy_admin.reject, methods=["POST"]),
        Route("/admin/policy/versions/{ref}/apply", policy_admin.apply, methods=["POST"]),
        Route("/admin/policy/rollback", policy_admin.rollback, methods=["POST"]),
        Route("/admin/policy/break-glass", policy_admin.break_glass, methods=["POST"]),
        Route("/admin/incidents", incident_admin.list),
        Route("/admin/incidents/{ref}", incident_admin.show),
        Route("/admin/incidents/{ref}/acknowledge", incident_admin.acknowledge, methods=["POST"]),
        Route("/admin/incidents/{ref}/close", incident_admin.close, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: _not_found, 405: _method_not_allowed, 500: _server_error})
    app.state.gateway = gateway
    app.state.settings = settings
    return HotPath(app, {"/v1/chat/completions": gateway.chat_completions, "/v1/completions": gateway.completions,
                         "/v1/embeddings": gateway.embeddings})
