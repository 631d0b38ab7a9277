"""The ``monitoring`` section of a policy: thresholds on live traffic and what happens when one
is crossed (ADR 0010).

    monitoring:
      thresholds:
        - id: identity-block-rate
          metric: block_rate          # share of requests a guardrail blocked
          per: identity               # one incident per identity that crosses it
          above: 0.05
          window: 10m
          escalate:
            - {after: 0m, action: notify}         # the webhook
            - {after: 5m, action: suspend_keys}   # the identity's keys stop working
            - {after: 15m, action: page}          # the pager
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gatehouse.core.durations import is_zero_duration, parse_duration
from gatehouse.core.schema import Strict
from gatehouse.core.yamldoc import items_in, mapping_in

Metric = Literal["requests", "error_rate", "upstream_error_rate", "block_rate", "guardrail_hits",
                 "latency_p50", "latency_p95", "latency_p99"]
RATES = {"error_rate", "upstream_error_rate", "block_rate"}
COUNTS = {"requests", "guardrail_hits"}
Per = Literal["identity", "alias", "deployment", "gateway"]
MAX_WINDOW = timedelta(hours=24)
MAX_BASELINE = timedelta(days=7)


def _duration(value: str, what: str, zero: bool = False) -> timedelta:
    if zero and is_zero_duration(value):
        return timedelta(0)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


class Step(Strict):
    after: str = "0m"  # since the incident opened, while nobody has acknowledged it
    action: Literal["notify", "suspend_keys", "page"]

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        if _duration(value, "after", zero=True) > MAX_WINDOW:
            raise ValueError("after: at most 24h")
        return value

    @property
    def delay(self) -> timedelta:
        return _duration(self.after, "after", zero=True)


class Threshold(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    metric: Metric
    per: Per = "gateway"
    only: tuple[str, ...] | None = Field(None, min_length=1)  # these identities / aliases / deployments
    above: float | None = Field(None, ge=0)  # a rate as a share (0.05), a latency in seconds, a count
    window: str = "10m"
    baseline: str | None = None  # compare with the same metric over this period before the window …
    factor: float | None = Field(None, gt=1)  # … and breach when it is this many times that
    min_requests: int = Field(20, ge=1)  # fewer requests in the window prove nothing
    escalate: tuple[Step, ...] = (Step(after="0m", action="notify"),)
    description: str | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if _duration(value, "window") > MAX_WINDOW:
            raise ValueError("window: at most 24h")
        return value

    @field_validator("baseline")
    @classmethod
    def _baseline(cls, value: str | None) -> str | None:
        if value is not None and _duration(value, "baseline") > MAX_BASELINE:
            raise ValueError("baseline: at most 7d")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Threshold:
        if self.above is None and self.factor is None:
            raise ValueError("a threshold needs `above`, or `baseline` and `factor`")
        if (self.baseline is None) != (self.factor is None):
            raise ValueError("`baseline` and `factor` go together")
        if self.baseline is not None and self.baseline_span < self.window_span:
            raise ValueError("the baseline must be at least as long as the window")
        if self.metric in RATES and self.above is not None and self.above > 1:
            raise ValueError(f"{self.metric} is a share between 0 and 1: `above: 0.05` is 5%")
        if self.per == "gateway" and self.only is not None:
            raise ValueError("`only` names identities, aliases or deployments: set `per` too")
        if any(step.action == "suspend_keys" for step in self.escalate) and self.per != "identity":
            raise ValueError("suspend_keys needs `per: identity` (whose keys would it suspend?)")
        return self

    @property
    def window_span(self) -> timedelta:
        return _duration(self.window, "window")

    @property
    def baseline_span(self) -> timedelta:
        return _duration(self.baseline, "baseline") if self.baseline else timedelta(0)


class Monitoring(Strict):
    thresholds: tuple[Threshold, ...] = ()

    @field_validator("thresholds")
    @classmethod
    def _unique(cls, value: tuple[Threshold, ...]) -> tuple[Threshold, ...]:
        ids = [threshold.id for threshold in value]
        twice = sorted({name for name in ids if ids.count(name) > 1})
        if twice:
            raise ValueError(f"threshold ids must be unique: {', '.join(twice)}")
        return value


def monitoring_reference_problems(data: dict, defined: dict[str, dict]) -> list[tuple[tuple, str]]:
    """Thresholds scoped to aliases or deployments the policy does not define; on the raw
    document, each with its path."""
    monitoring = mapping_in(data.get("monitoring"))
    thresholds = items_in(monitoring.get("thresholds"))
    problems: list[tuple[tuple, str]] = []
    for position, threshold in enumerate(thresholds):
        if not isinstance(threshold, dict) or threshold.get("per") not in defined:
            continue  # identities live in the store, not the policy
        only = items_in(threshold.get("only"))
        for index, name in enumerate(only):
            if isinstance(name, str) and name not in defined[threshold["per"]]:
                problems.append((("monitoring", "thresholds", position, "only", index),
                                 f"threshold {threshold.get('id')!r} names unknown {threshold['per']} {name!r}"))
    return problems
