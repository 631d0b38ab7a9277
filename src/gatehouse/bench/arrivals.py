"""When requests are sent: a scenario's arrival process turned into phases.

A phase is either a closed loop (N clients, each sending its next request when the last
one ends) or an open-loop schedule of send times, fixed before the run starts so that a
slow target cannot slow the arrivals down (no coordinated omission).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gatehouse.bench.scenario import (
    BurstArrivals,
    ClosedLoop,
    ConstantRate,
    GammaArrivals,
    PoissonArrivals,
    RampArrivals,
    ReplayArrivals,
    StagedArrivals,
)

MAX_SENDS = 5_000_000  # per tenant: the schedule is drawn before the run, in memory


@dataclass
class Phase:
    label: str
    start: float                        # seconds since the run started
    duration: float | None              # None: until the request budget is spent
    concurrency: int | None = None      # a closed loop
    times: list[float] = field(default_factory=list)            # open loop: send offsets
    overrides: list[dict[str, Any] | None] = field(default_factory=list)  # per send (replay)
    kind: str = ""                      # the arrival kind that made it

    @property
    def end(self) -> float | None:
        return None if self.duration is None else self.start + self.duration


class TraceError(ValueError):
    pass


class ScheduleTooLarge(ValueError):
    pass


def _cap(count: int) -> None:
    if count > MAX_SENDS:
        raise ScheduleTooLarge(f"the arrivals would schedule more than {MAX_SENDS:,} requests for one tenant: "
                               "lower the rate or the duration, or set requests")


def _until(start: float, end: float | None, budget: int | None, gaps: Iterable[float]) -> list[float]:
    times: list[float] = []
    t = start
    for gap in gaps:
        t += gap
        if (end is not None and t >= end) or (budget is not None and len(times) >= budget):
            break
        times.append(t)
        if len(times) > MAX_SENDS:
            _cap(len(times))
    return times


def _constant_times(rate: float, start: float, end: float | None, budget: int | None) -> list[float]:
    # i / rate, not a running sum of 1 / rate: the sum's rounding lets an extra send in before the end.
    if end is None and budget is None:
        raise ValueError("constant arrivals need a duration or a request budget")
    count = budget if end is None else math.ceil((end - start) * rate - 1e-9)
    assert count is not None
    if budget is not None:
        count = min(count, budget)
    _cap(count)
    return [start + i / rate for i in range(count)]


def _renewal_gaps(draw: Callable[[], float]) -> Iterator[float]:
    while True:
        yield draw()


def ramp_inverse(start_rate: float, end_rate: float, over: float, shape: str, area: float) -> float:
    """The time t at which the expected number of arrivals of the ramp reaches ``area``."""
    if shape == "exponential" and start_rate != end_rate:
        growth = math.log(end_rate / start_rate)
        inside = 1 + area * growth / (start_rate * over)
        return math.inf if inside <= 0 else over * math.log(inside) / growth
    slope = (end_rate - start_rate) / over
    if slope == 0:
        return area / start_rate
    disc = start_rate * start_rate + 2 * slope * area
    return math.inf if disc < 0 else (-start_rate + math.sqrt(disc)) / slope


def _ramp_times(spec: RampArrivals, start: float, end: float | None, budget: int | None, rng: random.Random) -> list[float]:
    times: list[float] = []
    area = 0.0 if spec.process == "constant" else rng.expovariate(1.0)
    while budget is None or len(times) < budget:
        offset = ramp_inverse(spec.start_rate, spec.end_rate, spec.over, spec.shape, area)
        if offset >= spec.over or (end is not None and start + offset >= end):
            break
        times.append(start + offset)
        _cap(len(times))
        area += 1.0 if spec.process == "constant" else rng.expovariate(1.0)
    return times


def read_trace(path: Path) -> list[tuple[float, dict[str, Any] | None]]:
    """JSON lines with ``t`` in seconds (any origin) and optional per-request fields."""
    rows: list[tuple[float, dict[str, Any] | None]] = []
    allowed = {"t", "prompt_tokens", "output_tokens"}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise TraceError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or isinstance(row.get("t"), bool) or not isinstance(row.get("t"), (int, float)):
            raise TraceError(f"{path}:{number}: each line needs a number t (seconds)")
        if len(rows) >= MAX_SENDS:
            _cap(len(rows) + 1)
        if unknown := set(row) - allowed:
            raise TraceError(f"{path}:{number}: unknown fields {sorted(unknown)} (allowed: {sorted(allowed)})")
        for name in ("prompt_tokens", "output_tokens"):
            value = row.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise TraceError(f"{path}:{number}: {name} must be a positive whole number")
        rows.append((float(row.pop("t")), row or None))
    if not rows:
        raise TraceError(f"{path}: the trace is empty")
    rows.sort(key=lambda item: item[0])
    return rows


def _simple_phase(spec: Any, label: str, start: float, duration: float | None, budget: int | None,
                  rng: random.Random) -> Phase:
    end = None if duration is None else start + duration
    kind = spec.kind
    if isinstance(spec, ClosedLoop):
        return Phase(label, start, duration, concurrency=spec.concurrency, kind=kind)
    if isinstance(spec, ConstantRate):
        return Phase(label, start, duration, times=_constant_times(spec.rate, start, end, budget), kind=kind)
    if isinstance(spec, PoissonArrivals):
        gaps = _renewal_gaps(lambda: rng.expovariate(spec.rate))
        return Phase(label, start, duration, times=_until(start, end, budget, gaps), kind=kind)
    if isinstance(spec, GammaArrivals):
        shape = 1 / (spec.cv * spec.cv)
        gaps = _renewal_gaps(lambda: rng.gammavariate(shape, 1 / (spec.rate * shape)))
        return Phase(label, start, duration, times=_until(start, end, budget, gaps), kind=kind)
    if isinstance(spec, BurstArrivals):
        _cap(sum(burst.count for burst in spec.bursts))
        times = sorted(start + burst.at for burst in spec.bursts for _ in range(burst.count)
                       if end is None or start + burst.at < end)
        last = max(burst.at for burst in spec.bursts)
        return Phase(label, start, duration if duration is not None else last, times=times[:budget], kind=kind)
    if isinstance(spec, RampArrivals):
        length = spec.over if duration is None else min(spec.over, duration)
        return Phase(label, start, length, times=_ramp_times(spec, start, end, budget, rng), kind=kind)
    raise TypeError(f"not a simple arrival: {spec!r}")


def plan_phases(spec: Any, duration: float | None, budget: int | None, rng: random.Random,
                base: Path) -> list[Phase]:
    """The phases of one tenant's traffic; ``duration`` and ``budget`` cap the whole."""
    if isinstance(spec, StagedArrivals):
        phases, start = [], 0.0
        for index, stage in enumerate(spec.stages):
            length = stage.duration if duration is None else min(stage.duration, duration - start)
            if length <= 0:
                break
            phases.append(_simple_phase(stage.arrival, stage.label or f"stage {index + 1}", start, length, None, rng))
            start += stage.duration
        return phases
    if isinstance(spec, ReplayArrivals):
        rows = read_trace(base / spec.file)
        origin = rows[0][0]
        times = [(t - origin) / spec.speed for t, _ in rows]
        keep = [i for i, t in enumerate(times) if duration is None or t < duration][:budget]
        last = times[keep[-1]] if keep else 0.0
        return [Phase("replay", 0.0, duration if duration is not None else last,
                      times=[times[i] for i in keep], overrides=[rows[i][1] for i in keep], kind="replay")]
    return [_simple_phase(spec, spec.kind, 0.0, duration, budget, rng)]
