"""Runs a scenario against a target and records what every request saw."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from gatehouse.bench.arrivals import Phase, plan_phases
from gatehouse.bench.http1 import Head, Http1Client, HttpError
from gatehouse.bench.scenario import Scenario, Tenant
from gatehouse.bench.workload import Workload, request_body, words

KEPT_HEADERS = ("x-gatehouse-request-id", "x-gatehouse-deployment", "x-gatehouse-fallbacks", "server-timing",
                "x-request-id")


@dataclass(slots=True)
class Outcome:
    i: int
    tenant: str
    phase: str
    start_s: float
    lag_ms: float
    status: int = 0
    error: str | None = None
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    itl_ms: float | None = None
    end_s: float | None = None
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    cold: bool = False
    fallbacks: str | None = None
    deployment: str | None = None
    request_id: str | None = None
    gateway_ms: float | None = None
    mock_ms: float | None = None
    added_ms_mock: float | None = None
    added_ms_header: float | None = None


@dataclass
class TenantPlan:
    tenant: Tenant
    key: str
    model: str
    phases: list[Phase]


@dataclass(repr=False)
class RunResult:
    scenario: Scenario
    target: str
    started_at: datetime
    duration_s: float
    outcomes: list[Outcome]
    itl_gaps_ms: array
    plans: list[TenantPlan]
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        # Short on purpose: asyncio formats the main task's result when the run ends (Runner
        # restoring SIGINT), and a full dataclass repr of every outcome took a third of a second.
        return f"RunResult({self.scenario.name!r}, {len(self.outcomes)} requests)"


@dataclass
class Progress:
    sent: int = 0
    completed: int = 0
    ok: int = 0
    errors: int = 0
    elapsed: float = 0.0
    planned_seconds: float | None = None
    planned_requests: int | None = None


def server_timing(value: str | None) -> dict[str, float]:
    """``gatehouse;dur=0.41, upstream;dur=12.3`` → {"gatehouse": 0.41, "upstream": 12.3}."""
    timings: dict[str, float] = {}
    for metric in (value or "").split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        for param in params:
            key, _, number = param.partition("=")
            if key == "dur" and name:
                with contextlib.suppress(ValueError):
                    timings[name] = float(number.strip('"'))
    return timings


def _valid_usage(usage: Any) -> bool:
    if not isinstance(usage, dict):
        return False
    return all(value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
               for name, value in usage.items() if name in ("prompt_tokens", "completion_tokens"))


class _Exchange:
    """Reads one response as it arrives: status, headers, SSE events and their times."""

    __slots__ = ("stream", "keep_text", "head", "head_at", "buffer", "token_times", "text", "usage", "stream_error",
                 "done")

    def __init__(self, stream: bool, keep_text: bool) -> None:
        self.stream = stream
        self.keep_text = keep_text
        self.head: Head | None = None
        self.head_at = 0.0
        self.buffer = bytearray()
        self.token_times: list[float] = []
        self.text: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.stream_error: str | None = None
        self.done = False

    def on_head(self, head: Head) -> None:
        self.head = head
        self.head_at = time.perf_counter()

    def on_body(self, data: bytes) -> None:
        if not self.stream or self.head is None or self.head.status != 200:
            self.buffer += data
            return
        # SSE allows CRLF line ends; a CR left at a piece's end is stripped with the payload.
        self.buffer += data.replace(b"\r\n", b"\n")
        now = time.perf_counter()
        while (end := self.buffer.find(b"\n\n")) != -1:
            event = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            self._event(event, now)

    def _event(self, event: bytes, now: float) -> None:
        if not event.startswith(b"data:"):
            return
        payload = event[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.stream_error = "bad_event"
            return
        if "error" in data:
            self.stream_error = "stream_error"
            return
        if not isinstance(data, dict):
            self.stream_error = "bad_event"
            return
        if data.get("usage"):
            self.usage = data["usage"]
        choices = data.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(choice, dict) for choice in choices):
            self.stream_error = "bad_event"
            return
        for choice in choices:
            piece = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
            if piece and isinstance(piece, str):
                self.token_times.append(now)
                if self.keep_text:
                    self.text.append(piece)

    def whole_body(self) -> tuple[str, Any]:
        """The answer's text and usage; ValueError when the body is not a completion."""
        try:
            data = orjson.loads(bytes(self.buffer))
            choice = (data.get("choices") or [{}])[0]
            text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
        except (orjson.JSONDecodeError, AttributeError, TypeError, IndexError, KeyError):
            raise ValueError("not a completion") from None
        return text if isinstance(text, str) else "", data.get("usage")


class ScenarioRun:
    def __init__(self, scenario: Scenario, target: str, plans: list[TenantPlan], base: Path,
                 mock_url: str | None = None, on_progress: Callable[[Progress], None] | None = None) -> None:
        self.scenario = scenario
        self.target = target.rstrip("/")
        self.plans = plans
        self.base = base
        self.mock_url = mock_url.rstrip("/") if mock_url else None
        self.on_progress = on_progress
        self.rng = random.Random(scenario.seed)
        self.workload = Workload(scenario, base, self.rng)
        self.outcomes: list[Outcome] = []
        self.gaps = array("d")
        self.progress = Progress()
        self.notes: list[str] = []
        self._warm_models: set[str] = set()
        self._mock_original: dict[str, Any] | None = None
        self._budget: dict[str, int | None] = {}
        self._heads: dict[tuple[str, str], bytes] = {}
        self._path = "/chat/completions" if scenario.endpoint == "chat" else "/completions"
        prefix = "" if self.target.endswith("/v1") else "/v1"
        self.client = Http1Client(self.target + prefix, scenario.max_connections, KEPT_HEADERS)

    # -- one request ------------------------------------------------------------------------

    async def _request(self, plan: TenantPlan, phase: Phase, history: list[dict[str, str]], prefix: str | None,
                       max_tokens: int, scheduled: float, loop_start: float) -> tuple[Outcome, str]:
        tenant = plan.tenant.name
        head_key = (tenant, plan.model)
        if head_key not in self._heads:
            self._heads[head_key] = self.client.head_bytes("POST", self._path, {
                "Authorization": f"Bearer {plan.key}", "Content-Type": "application/json"})
        body = request_body(self.scenario, plan.model, history, prefix, max_tokens)
        number = len(self.outcomes)
        head = self._heads[head_key] + b"X-Request-Id: bench-%d\r\n" % number
        sent = time.perf_counter()
        outcome = Outcome(number, tenant, phase.label, sent - loop_start, (sent - scheduled) * 1000)
        if plan.model not in self._warm_models:
            outcome.cold = True  # sent before this model's first answer arrived
        self.outcomes.append(outcome)
        self.progress.sent += 1
        reading = _Exchange(self.scenario.stream, self.scenario.sessions is not None)
        text = ""
        try:
            async with asyncio.timeout(self.scenario.timeout):
                response = await self.client.exchange(head, body, reading.on_head, reading.on_body)
            finished = time.perf_counter()
            text = self._finish(outcome, reading, response, sent, finished)
        except TimeoutError:
            outcome.error = "timeout"
            outcome.status = reading.head.status if reading.head else 0
        except HttpError as exc:
            outcome.error = str(exc)
            outcome.status = reading.head.status if reading.head else 0
        end = time.perf_counter()
        if outcome.error is None:
            self._warm_models.add(plan.model)
        outcome.end_s = end - loop_start
        outcome.e2e_ms = outcome.e2e_ms if outcome.e2e_ms is not None else (end - sent) * 1000
        self.progress.completed += 1
        if outcome.error is None:
            self.progress.ok += 1
        else:
            self.progress.errors += 1
        return outcome, text

    def _finish(self, outcome: Outcome, reading: _Exchange, response: Head, sent: float, finished: float) -> str:
        headers = response.headers
        outcome.status = response.status
        outcome.e2e_ms = (finished - sent) * 1000
        outcome.request_id = headers.get("x-gatehouse-request-id") or headers.get("x-request-id")
        outcome.deployment = headers.get("x-gatehouse-deployment")
        outcome.fallbacks = headers.get("x-gatehouse-fallbacks")
        timing = server_timing(headers.get("server-timing"))
        if "gatehouse" in timing:
            outcome.gateway_ms = outcome.added_ms_header = timing["gatehouse"]
        if response.status != 200:
            outcome.error = f"http_{response.status}"
            return ""
        text = ""
        usage: dict[str, Any] | None
        if reading.stream:
            times = reading.token_times
            if times:
                outcome.ttft_ms = (times[0] - sent) * 1000
                if len(times) > 1:
                    gaps = [(b - a) * 1000 for a, b in zip(times, times[1:], strict=False)]
                    self.gaps.extend(gaps)
                    outcome.itl_ms = sum(gaps) / len(gaps)
            usage = reading.usage
            text = "".join(reading.text)
            if reading.stream_error or not reading.done:
                outcome.error = reading.stream_error or "stream_incomplete"
        else:
            try:
                text, usage = reading.whole_body()
            except ValueError:
                outcome.error, usage = "bad_json", None
        if usage is not None and not _valid_usage(usage):
            outcome.error = outcome.error or "bad_usage"
            usage = None
        if usage:
            outcome.output_tokens = usage.get("completion_tokens")
            outcome.prompt_tokens = usage.get("prompt_tokens")
        elif reading.stream:
            outcome.output_tokens = len(reading.token_times)
        return text

    # -- traffic ------------------------------------------------------------------------------

    def _take(self, tenant: str) -> bool:
        left = self._budget[tenant]
        if left is None:
            return True
        if left <= 0:
            return False
        self._budget[tenant] = left - 1
        return True

    async def _unit(self, plan: TenantPlan, phase: Phase, overrides: dict[str, Any] | None, scheduled: float,
                    loop_start: float) -> None:
        """One request, or one multi-turn session when the scenario has sessions."""
        sessions = self.scenario.sessions
        turns = sessions.turns if sessions else 1
        history: list[dict[str, str]] = []
        prefix, text, max_tokens = self.workload.draw(overrides)
        for turn in range(turns):
            if turn:
                if not self._take(plan.tenant.name):
                    return
                await asyncio.sleep(sessions.think_time if sessions else 0)
                _, text, max_tokens = self.workload.draw(overrides)
                scheduled = time.perf_counter()
            history.append({"role": "user", "content": text})
            outcome, answer = await self._request(plan, phase, history, prefix, max_tokens, scheduled, loop_start)
            if outcome.error is not None:
                return
            history.append({"role": "assistant", "content": answer or words(1, self.rng)})

    async def _closed(self, plan: TenantPlan, phase: Phase, loop_start: float) -> None:
        end = None if phase.end is None else loop_start + phase.end

        async def client() -> None:
            while (end is None or time.perf_counter() < end) and self._take(plan.tenant.name):
                await self._unit(plan, phase, None, time.perf_counter(), loop_start)

        await asyncio.gather(*(client() for _ in range(phase.concurrency or 1)))

    def _spent(self, tenant: str) -> bool:
        left = self._budget[tenant]
        return left is not None and left <= 0

    async def _open(self, plan: TenantPlan, phase: Phase, loop_start: float, tasks: set[asyncio.Task]) -> None:
        overrides = phase.overrides or [None] * len(phase.times)
        for offset, override in zip(phase.times, overrides, strict=True):
            if self._spent(plan.tenant.name):
                return
            scheduled = loop_start + offset
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self._take(plan.tenant.name):
                return
            task = asyncio.ensure_future(self._unit(plan, phase, override, scheduled, loop_start))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _tenant(self, plan: TenantPlan, loop_start: float) -> None:
        tasks: set[asyncio.Task] = set()
        for phase in plan.phases:
            if self._spent(plan.tenant.name):
                break
            delay = loop_start + phase.start - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if phase.concurrency is not None:
                await self._closed(plan, phase, loop_start)
            else:
                await self._open(plan, phase, loop_start, tasks)
        while tasks:
            await asyncio.gather(*list(tasks))

    def _fault_config(self, moment: float) -> dict[str, Any]:
        """The mock's settings at ``moment``: as found, overlaid by every fault active then, in start order."""
        assert self._mock_original is not None
        config = dict(self._mock_original)
        for fault in sorted(self.scenario.faults, key=lambda item: item.at):
            if fault.at <= moment < fault.at + fault.duration:
                config.update(fault.set.model_dump(exclude_none=True))
        return config

    async def _start_faults(self, control: httpx.AsyncClient) -> None:
        """Read the mock's settings to restore later, and apply faults that start at 0 before the first request."""
        self._mock_original = (await control.get("/_mock/config")).raise_for_status().json()
        if any(fault.at == 0 for fault in self.scenario.faults):
            (await control.post("/_mock/config", json=self._fault_config(0.0))).raise_for_status()

    async def _faults(self, control: httpx.AsyncClient, loop_start: float) -> None:
        """Apply the faults as a timeline: at each window's start or end the mock gets the settings
        of every window active from then on, so overlapping windows combine."""
        for fault in self.scenario.faults:
            self.notes.append(f"fault from {fault.at:g}s for {fault.duration:g}s: {fault.set.model_dump(exclude_none=True)}")
        moments = sorted({moment for fault in self.scenario.faults for moment in (fault.at, fault.at + fault.duration)
                          if moment > 0})
        for moment in moments:
            await asyncio.sleep(max(0.0, loop_start + moment - time.perf_counter()))
            await control.post("/_mock/config", json=self._fault_config(moment))

    async def _restore_mock(self, control: httpx.AsyncClient) -> None:
        """A run can end inside a fault window: leave the mock as it was found."""
        if self._mock_original is not None:
            await control.post("/_mock/config", json=self._mock_original)

    async def _ticker(self, loop_start: float) -> None:
        while True:
            self.progress.elapsed = time.perf_counter() - loop_start
            if self.on_progress is not None:
                self.on_progress(self.progress)
            await asyncio.sleep(0.25)

    async def _join_mock_timings(self) -> None:
        assert self.mock_url is not None
        async with httpx.AsyncClient(timeout=30) as control:
            timings = (await control.get(f"{self.mock_url}/_mock/timings")).json()
        by_id = {item["id"]: item for item in timings}
        for outcome in self.outcomes:
            mock = by_id.get(outcome.request_id or "")
            if mock is None or outcome.error is not None:
                continue
            if self.scenario.stream and mock.get("ttft_ms") is not None and outcome.ttft_ms is not None:
                outcome.mock_ms = mock["ttft_ms"]
                outcome.added_ms_mock = outcome.ttft_ms - mock["ttft_ms"]
            elif not self.scenario.stream and mock.get("e2e_ms") is not None and outcome.e2e_ms is not None:
                outcome.mock_ms = mock["e2e_ms"]
                outcome.added_ms_mock = outcome.e2e_ms - mock["e2e_ms"]

    async def run(self) -> RunResult:
        for plan in self.plans:
            self._budget[plan.tenant.name] = self.scenario.requests
        self.progress.planned_seconds = self.scenario.duration or max(
            (phase.end or 0.0 for plan in self.plans for phase in plan.phases), default=None) or None
        self.progress.planned_requests = self._planned_requests()
        async with contextlib.AsyncExitStack() as stack:
            control = None
            if self.mock_url is not None:
                control = await stack.enter_async_context(httpx.AsyncClient(base_url=self.mock_url, timeout=10))
                (await control.delete("/_mock/timings")).raise_for_status()
                if self.scenario.faults:
                    await self._start_faults(control)
            started_at = datetime.now(UTC)
            loop_start = time.perf_counter()
            ticker = asyncio.ensure_future(self._ticker(loop_start))
            faults = asyncio.ensure_future(self._faults(control, loop_start)) if self._mock_original and control else None
            try:
                await asyncio.gather(*(self._tenant(plan, loop_start) for plan in self.plans))
            finally:
                duration = time.perf_counter() - loop_start
                for task in (ticker, faults):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(BaseException):
                            await task
                self.client.close()
                if control is not None:
                    await self._restore_mock(control)
        self.progress.elapsed = duration
        if self.on_progress is not None:
            self.on_progress(self.progress)
        if self.mock_url is not None:
            await self._join_mock_timings()
        lags = sorted(outcome.lag_ms for outcome in self.outcomes)
        if lags and lags[int(len(lags) * 0.99) - 1 if len(lags) >= 100 else -1] > 50:
            self.notes.append("the load generator sent some requests more than 50 ms late: this machine could not "
                              "keep up with the arrival rate, so latencies may be understated")
        return RunResult(self.scenario, self.target, started_at, duration, self.outcomes, self.gaps, self.plans,
                         self.notes)

    def _planned_requests(self) -> int | None:
        if any(phase.concurrency is not None for plan in self.plans for phase in plan.phases):
            return self.scenario.requests * len(self.plans) if self.scenario.requests else None
        total = sum(len(phase.times) for plan in self.plans for phase in plan.phases)
        turns = self.scenario.sessions.turns if self.scenario.sessions else 1
        if self.scenario.requests:
            return min(total * turns, self.scenario.requests * len(self.plans))
        return total * turns


def build_plans(scenario: Scenario, default_key: str | None, environ: dict[str, str], base: Path,
                model: str | None = None) -> list[TenantPlan]:
    """Each tenant's key, model and phases; raises ValueError with a message for the user."""
    tenants = scenario.tenants or [Tenant(name="default")]
    plans = []
    for index, tenant in enumerate(tenants):
        if tenant.key_env:
            key = environ.get(tenant.key_env)
            if not key:
                raise ValueError(f"tenant {tenant.name!r}: environment variable {tenant.key_env} is not set")
        elif default_key:
            key = default_key
        else:
            raise ValueError(f"tenant {tenant.name!r} has no key: pass --key (or set GATEHOUSE_BENCH_KEY), "
                             "or give the tenant a key_env")
        chosen = tenant.model or model or scenario.model
        if not chosen:
            raise ValueError("no model: set model in the scenario or pass --model")
        rng = random.Random(f"{scenario.seed}:arrivals:{index}")
        phases = plan_phases(tenant.arrival or scenario.arrival, scenario.duration, scenario.requests, rng, base)
        plans.append(TenantPlan(tenant, key, chosen, phases))
    return plans


def run_async(coroutine: Any) -> Any:
    """Runs the load generator on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
