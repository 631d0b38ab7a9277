"""Builds the ASGI application from its parts: the hot-path state (key table, enforced
policy, record writer), the HTTP endpoints, and the background jobs that keep the state
current."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

from starlette.applications import Starlette

from gatehouse.api.health import Health
from gatehouse.api.inference import Gateway
from gatehouse.api.routes import AdminApis, HotPath, build_app
from gatehouse.app.background import every, jobs
from gatehouse.app.signals import announce_shutdown_to
from gatehouse.audit import delivery
from gatehouse.audit import log as audit_log
from gatehouse.core.clock import as_utc
from gatehouse.core.config import Settings
from gatehouse.core.errors import GatehouseError
from gatehouse.engines.build import build_engines
from gatehouse.policy import versions
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.runtime.enforced import Enforced, PolicyFollower, worker_id
from gatehouse.runtime.freshness import Freshness
from gatehouse.runtime.keytable import KeyTable
from gatehouse.runtime.records import RecordWriter
from gatehouse.runtime.spool import Spool
from gatehouse.runtime.spool import prepare as prepare_spool
from gatehouse.store.db import Database
from gatehouse.telemetry import exposition
from gatehouse.telemetry.gateway_metrics import GatewayMetrics
from gatehouse.telemetry.tracing import Tracing, enabled_by_environment, finish_trace

log = logging.getLogger("gatehouse")


def active_policy(db: Database, home: Path) -> tuple[CompiledPolicy, int, datetime | None]:
    """The version the store says is active (``gatehouse serve`` makes sure there is one), the
    policy counter it was read at, and when it expires if it is a break-glass version."""
    with db.read() as session:
        revision = versions.policy_revision(session)
    active = versions.active_policy(db)
    if active is None:
        raise GatehouseError("no policy version is active: start the gateway with `gatehouse serve`")
    loaded, activation = active
    expires = as_utc(activation.expires_at) if activation.kind == "break-glass" else None
    return CompiledPolicy(loaded).prepare(home), revision, expires


def create_app(settings: Settings | None = None) -> HotPath:
    settings = settings or Settings.from_env()
    db = Database(settings.database_url)
    policy, policy_revision, expires_at = active_policy(db, settings.home)
    keys = KeyTable(settings.pepper())

    def defined(alias: str) -> bool:  # an alias of the enforced policy (follower: assigned below, before any request)
        return follower.current.policy.has_alias(alias)

    worker = worker_id()
    tracing = Tracing(worker, defined) if enabled_by_environment() else None
    with db.read() as session:  # one folder per installation: a spool shared by mistake never crosses stores
        spool_folder = settings.spool_path / audit_log.installation_tag(session)
    prepare_spool(settings.spool_path)  # the folder above this installation's must be private too
    spool = Spool(spool_folder, worker, settings.spool_fsync_ms / 1000)
    records = RecordWriter(db, spool, max_bytes=settings.spool_max_bytes,
                           refuse_at_bound=settings.refuse_without_evidence, defined=defined,
                           observers=[finish_trace, GatewayMetrics(defined, settings.metrics_identity_label).observe],
                           policy_version=lambda: follower.current.policy.version)
    freshness = Freshness(settings.max_staleness, lambda: follower.seen_at)
    engines, _ = build_engines(policy.deployments, settings)
    gateway = Gateway(Enforced(policy, engines), keys, records, settings.max_body_bytes, tracing, freshness)
    follower = PolicyFollower(db, settings, gateway.enforced, policy_revision, expires_at=expires_at, on_swap=[
        lambda new: setattr(gateway, "enforced", new)])
    signing_key = delivery.configure(settings)  # signs at the cadence; each checkpoint reaches the witnesses
    background = jobs(db, settings, keys, follower, freshness, signing_key)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(keys.refresh, db)
        spool.open()
        for engine in engines.values():
            await engine.start()
        records.start(keys.take_last_used)
        try:  # report in at once, then every HEARTBEAT_INTERVAL
            await asyncio.to_thread(follower.heartbeat)
        except Exception as exc:
            log.error("worker heartbeat failed: %s", type(exc).__name__)
        tasks = [asyncio.create_task(every(job)) for job in background]
        # Modules, the policy and the engines live as long as the worker: a full collection need not
        # walk them again (one took ~80 ms on a request's path before; Instagram's gc.freeze).
        gc.freeze()
        restore_signals = announce_shutdown_to(follower.engines)
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
            await asyncio.to_thread(spool.close)  # what the store did not take stays for the next worker
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)
            db.dispose()
            exposition.worker_exited(os.getpid())

    app = build_app(gateway, Health(follower, keys, records, freshness), AdminApis.build(db, settings, settings.pepper()), lifespan)
    app.state.settings = settings
    return app
