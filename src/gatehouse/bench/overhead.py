"""``gatehouse bench overhead``: what Gatehouse adds on top of the engine behind it.

Starts the mock upstream and a real ``gatehouse serve`` in front of it with full governance
on (key authentication, policy, routing, decision records, metrics), then runs the same
closed-loop load against the mock alone and through Gatehouse at each concurrency.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from gatehouse.bench.processes import ServerProcess, start_gateway, start_mock_upstream
from gatehouse.bench.report import build_report
from gatehouse.bench.runner import ScenarioRun, build_plans, run_async
from gatehouse.bench.scenario import ClosedLoop, FixedLength, OutputShape, PromptShape, Scenario
from gatehouse.identity import service
from gatehouse.identity.bootstrap import bootstrap
from gatehouse.store.db import Database

ADMIN = "bench-admin@example.com"  # the throwaway home's first identity-admin
ACTOR = f"person:{ADMIN}"
PEPPER = "bench-overhead-pepper"


@dataclass
class Level:
    concurrency: int
    direct: dict[str, Any]
    gateway: dict[str, Any]
    cpu_us: float | None = None  # the gateway's CPU per request it answered (CpuMeter)

    @staticmethod
    def _p(summary: dict[str, Any], name: str, q: str) -> float | None:
        dist = summary.get(name)
        return None if dist is None else dist[q]

    def row(self, stream: bool) -> dict[str, Any]:
        metric = "ttft_ms" if stream else "e2e_ms"
        direct, gateway = self.direct["summary"], self.gateway["summary"]
        d50, g50 = self._p(direct, metric, "p50"), self._p(gateway, metric, "p50")
        return {
            "concurrency": self.concurrency,
            "mock_rps": direct["throughput_rps"], "gatehouse_rps": gateway["throughput_rps"],
            "mock_p50_ms": d50, "gatehouse_p50_ms": g50,
            "mock_p99_ms": self._p(direct, metric, "p99"), "gatehouse_p99_ms": self._p(gateway, metric, "p99"),
            "added_p50_ms": None if d50 is None or g50 is None else g50 - d50,
            "added_header_p50_ms": self._p(gateway, "added_ms_header", "p50"),
            "added_mock_timing_p50_ms": self._p(gateway, "added_ms_mock", "p50"),
            "errors": gateway["errors"] + direct["errors"],
            "gatehouse_cpu_us_per_request": self.cpu_us,
        }


def _scenario(concurrency: int, duration: float, stream: bool, max_tokens: int) -> Scenario:
    return Scenario(name=f"overhead-c{concurrency}", model="chat", stream=stream, duration=duration,
                    arrival=ClosedLoop(kind="closed", concurrency=concurrency),
                    prompt=PromptShape(tokens=FixedLength(kind="fixed", value=8)),
                    output=OutputShape(tokens=FixedLength(kind="fixed", value=max_tokens)))


async def _measure(scenario: Scenario, target: str, key: str, mock_url: str) -> dict[str, Any]:
    plans = build_plans(scenario, key, {}, Path.cwd())
    return build_report(await ScenarioRun(scenario, target, plans, Path.cwd(), mock_url=mock_url).run())


def _prepare_home(home: Path, mock_url: str) -> str:
    """A gateway home whose one alias, ``chat``, routes to the mock; returns a key for it."""

    home.mkdir(parents=True, exist_ok=True)
    (home / "policy.yaml").write_text(
        "version: 1\n"
        f"deployments:\n  mock: {{engine: openai, url: \"{mock_url}/v1\", model: mock-model}}\n"
        "aliases:\n  chat: {route: [mock]}\n"
        "grants:\n  - {name: bench, subjects: [{identity: bench-load}], aliases: [chat]}\n")
    db = Database(f"sqlite:///{home / 'gatehouse.db'}")
    db.upgrade()
    bootstrap(db, "local:bench-overhead", ADMIN, pepper=PEPPER.encode(), ttl=timedelta(hours=1))
    service.add_person(db, ACTOR, "bench@example.com", team="bench")
    service.create_identity(db, ACTOR, "bench-load", "bench@example.com", environment="dev",
                            purpose="gatehouse bench overhead")
    _, key = service.issue_key(db, ACTOR, "bench-load", pepper=PEPPER.encode(), ttl=timedelta(hours=1),
                               max_ttl=timedelta(hours=1))
    db.dispose()
    return key


def session_cpu_seconds(session: int) -> float | None:
    """CPU time (user + system) used so far by the live processes of a session (the gateway and
    its workers, started with ``start_new_session``); None where ``/proc`` does not say."""
    ticks, total, seen = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100, 0, False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = text[text.rindex(")") + 2:].split()  # after the command name, which may hold spaces
        if int(fields[3]) == session:  # field 6 of stat(5): the session id
            total, seen = total + int(fields[11]) + int(fields[12]), True  # utime, stime
    return total / ticks if seen else None


class CpuMeter:
    """The gateway's own CPU per request: what its processes used during a run and the drain of
    its records after it, less what they use idle (heartbeats, key-table refreshes), measured
    just before each run. Unlike requests/s, this hardly depends on what else the machine does."""

    SETTLE = 1.5  # seconds for the spool to drain what came before
    IDLE = 2.0    # seconds of idle measured before each run

    def __init__(self, session: int) -> None:
        self.session = session

    def __call__(self, run: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float | None]:
        time.sleep(self.SETTLE)  # the warm-up's records drained
        idle = session_cpu_seconds(self.session)
        time.sleep(self.IDLE)
        began, start = time.monotonic(), session_cpu_seconds(self.session)
        report = run()
        time.sleep(self.SETTLE)
        end, requests = session_cpu_seconds(self.session), report["summary"]["requests"]
        if idle is None or start is None or end is None or not requests:
            return report, None
        used = end - start - (start - idle) / self.IDLE * (time.monotonic() - began)
        return report, max(0.0, used) / requests * 1e6


def _wait_for_key(url: str, key: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200:
            return
        time.sleep(0.05)
    raise RuntimeError("the gateway never accepted the benchmark's key")


def _wait_for_workers(gateway: ServerProcess, workers: int) -> None:
    """Every worker serving before anything is measured (one that is still starting would load
    its modules inside a measured run)."""
    deadline = time.monotonic() + 120
    while gateway.log().count("Application startup complete.") < workers and time.monotonic() < deadline:
        time.sleep(0.1)


def run_overhead(levels: list[int], duration: float, workers: int, stream: bool, max_tokens: int,
                 say: Callable[[str], None]) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="gatehouse-overhead-"))
    mock: ServerProcess | None = None
    gateway: ServerProcess | None = None
    try:
        mock = start_mock_upstream(scratch)
        key = _prepare_home(scratch / "home", mock.url)
        env = {**os.environ, "GATEHOUSE_HOME": str(scratch / "home"), "GATEHOUSE_PEPPER": PEPPER}
        for name in ("GATEHOUSE_DATABASE_URL", "GATEHOUSE_POLICY"):
            env.pop(name, None)
        gateway = start_gateway(env, scratch, workers=workers)
        _wait_for_key(gateway.url, key)
        _wait_for_workers(gateway, workers)
        meter = CpuMeter(gateway.process.pid)
        results = []
        for concurrency in levels:
            for label, target in (("mock alone", mock.url), ("through gatehouse", gateway.url)):
                say(f"concurrency {concurrency}: {label}, {duration:g}s after 1s of warm-up")
                run_async(_measure(_scenario(concurrency, 1.0, stream, max_tokens), target, key, mock.url))
                measured = partial(run_async, _measure(_scenario(concurrency, duration, stream, max_tokens),
                                                       target, key, mock.url))
                if label == "mock alone":
                    direct = measured()
                else:
                    report, cpu = meter(measured)
            results.append(Level(concurrency, direct, report, cpu))
        return {"workers": workers, "stream": stream, "max_tokens": max_tokens, "duration_s": duration,
                "cpus": os.cpu_count(), "levels": [level.row(stream) for level in results]}
    finally:
        for server in (gateway, mock):
            if server is not None:
                server.stop()
