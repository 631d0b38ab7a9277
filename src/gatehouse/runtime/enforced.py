"""The policy version a gateway worker enforces, and how it follows the store.

A request holds one ``Enforced`` from start to end. When another version becomes active the
worker builds the next ``Enforced`` (keeping engines whose deployment did not change), swaps
it in for new requests, and closes the engines only the old one used once the requests that
hold it have finished: nothing in flight is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from gatehouse.core.clock import as_utc, utcnow
from gatehouse.core.config import Settings
from gatehouse.engines.base import Engine
from gatehouse.engines.build import build_engines, engine_problems
from gatehouse.policy import change_control, versions
from gatehouse.policy import workers as policy_workers
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.store.db import Database

log = logging.getLogger("gatehouse.policy")
RETIRE_TIMEOUT = 15 * 60.0  # seconds an old version's engines wait for its last request
RETRY_INTERVAL = 5.0        # seconds between attempts to enforce a version that failed to load


@dataclass(eq=False)
class Enforced:
    policy: CompiledPolicy
    engines: dict[str, Engine]
    in_flight: int = 0

    def release(self) -> None:
        self.in_flight -= 1

    async def drained(self, timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.in_flight > 0:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True


_names: dict[int, str] = {}


def worker_id() -> str:
    """How this worker process names itself in heartbeats, usage counts and its spool: host,
    PID and a random tag, so two containers with the same hostname and PID never share a name
    (their usage rows would overwrite each other's). One name per process."""
    pid = os.getpid()
    if pid not in _names:
        _names[pid] = f"{socket.gethostname()}:{pid}:{secrets.token_hex(3)}"
    return _names[pid]


class PolicyFollower:
    """Polls the policy counter; on a change, loads and enforces the active version."""

    def __init__(self, db: Database, settings: Settings, enforced: Enforced, revision: int,
                 on_swap: list[Callable[[Enforced], None]], expires_at: datetime | None = None) -> None:
        self.db = db
        self.settings = settings
        self.current = enforced
        self.live: list[Enforced] = [enforced]  # the current one and those still finishing requests
        self.revision = revision
        self.on_swap = on_swap  # callables given the new Enforced
        self.problem: str | None = None
        self.expires_at = expires_at  # of a break-glass version in force
        self.worker = worker_id()
        self.started = utcnow()
        self._retry_at = 0.0
        self._seen_at = time.monotonic()  # when the store last answered a poll (runtime.freshness)
        self._loading = False
        self._retiring: set[asyncio.Task[None]] = set()

    def _revision(self) -> int:
        with self.db.read() as session:
            return versions.policy_revision(session)

    async def poll(self) -> bool:
        """One check; returns whether the enforced version changed."""
        loop = asyncio.get_running_loop()
        if self.expires_at is not None and utcnow() >= self.expires_at:
            await asyncio.to_thread(change_control.expire_break_glass, self.db)
        revision = await asyncio.to_thread(self._revision)
        self._seen_at = time.monotonic()  # the store answered
        if self.problem and loop.time() < self._retry_at:
            return False  # a version that failed to load is tried again every RETRY_INTERVAL
        if revision == self.revision and not self.problem:
            return False
        active = await asyncio.to_thread(versions.active_policy, self.db)
        if active is None:
            self.revision = revision
            return False
        loaded, activation = active
        self.expires_at = as_utc(activation.expires_at) if activation.kind == "break-glass" else None
        if loaded.version == self.current.policy.version:
            self.revision, self.problem = revision, None
            return False
        self._loading = True
        try:
            await self._swap(await asyncio.to_thread(CompiledPolicy(loaded).prepare, self.settings.home))
        except Exception as exc:  # keep enforcing the last good version; say why in the heartbeat
            self.problem = f"cannot enforce {loaded.short_version}: {exc}"
            self._retry_at = loop.time() + RETRY_INTERVAL
            log.error("%s", self.problem)
            await asyncio.to_thread(self.heartbeat)
            return False
        finally:
            self._loading = False
        self.revision, self.problem = revision, None
        await asyncio.to_thread(self.heartbeat)
        return True

    @property
    def seen_at(self) -> float:
        """When the store last answered a poll. While a version loads (a model can take a
        minute) no poll runs; the key table's refresh, which goes on, vouches for the store."""
        return time.monotonic() if self._loading else self._seen_at

    async def _swap(self, policy: CompiledPolicy) -> None:
        old = self.current
        reuse = {name: (old.policy.deployments[name], engine) for name, engine in old.engines.items()}
        engines, created = await asyncio.to_thread(build_engines, policy.deployments, self.settings, reuse)
        started: list[Engine] = []
        try:
            for engine in created:
                await engine.start()
                started.append(engine)
        except BaseException:
            for engine in started:
                await engine.close()
            raise
        new = Enforced(policy, engines)
        self.current = new
        self.live.append(new)
        for callback in self.on_swap:
            callback(new)
        log.warning("policy %s now enforced (was %s)", policy.version, old.policy.version)
        task = asyncio.create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, old: Enforced) -> None:
        """Once the requests holding ``old`` have finished, close its engines that no version
        still alive holds (an engine can be shared by several versions in turn)."""
        if not await old.drained(RETIRE_TIMEOUT):
            log.warning("closing engines of %s with %d request(s) still open", old.policy.version, old.in_flight)
        self.live.remove(old)
        held = {id(engine) for enforced in self.live for engine in enforced.engines.values()}
        for engine in old.engines.values():
            if id(engine) in held:
                continue
            try:
                await engine.close()
            except Exception as exc:
                log.error("closing retired engine %s failed: %s", getattr(engine, "name", "?"), type(exc).__name__)

    def heartbeat(self) -> None:
        unavailable = "; ".join(engine_problems(self.current.engines).values()) or None  # e.g. a bad credential
        policy_workers.heartbeat(self.db, self.worker, self.current.policy.version, self.problem or unavailable,
                                 self.started)

    async def close(self) -> None:
        for task in list(self._retiring):
            await task
        try:
            await asyncio.to_thread(policy_workers.forget_worker, self.db, self.worker)
        except Exception as exc:
            log.error("could not remove worker heartbeat: %s", type(exc).__name__)

    def engines(self) -> list[Engine]:
        return list(self.current.engines.values())
