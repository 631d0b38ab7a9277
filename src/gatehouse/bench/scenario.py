"""The scenario file of ``gatehouse bench run``: what traffic to send, and how.

Every problem is reported with its line, like the policy file. See docs/benchmarks.md for
the format; this module only describes and checks it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from gatehouse.core.yamldoc import DocumentError, Path_, load_document, read_document

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_seconds(value: Any) -> float:
    """``500ms``, ``2s``, ``1.5m``, ``1h`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a text such as 500ms, 2s, 1.5m")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"invalid duration {value!r}: use e.g. 500ms, 2s, 1.5m, 1h")
        seconds = float(match.group(1)) * _SCALE[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_seconds)]
PositiveInt = Annotated[int, Field(gt=0)]
Rate = Annotated[float, Field(gt=0, description="requests per second")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- lengths (in tokens) ------------------------------------------------------------------------


class Bounded(Strict):
    min: PositiveInt = 1
    max: PositiveInt = 1_000_000

    @model_validator(mode="after")
    def _ordered(self) -> Bounded:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class FixedLength(Strict):
    kind: Literal["fixed"]
    value: PositiveInt


class UniformLength(Bounded):
    kind: Literal["uniform"]


class NormalLength(Bounded):
    kind: Literal["normal"]
    mean: Annotated[float, Field(gt=0)]
    stddev: Annotated[float, Field(ge=0)]


class LognormalLength(Bounded):
    """``median`` is e^mu; ``sigma`` the standard deviation of the logarithm."""

    kind: Literal["lognormal"]
    median: Annotated[float, Field(gt=0)]
    sigma: Annotated[float, Field(ge=0)]


class EmpiricalLength(Strict):
    """Drawn uniformly from ``values`` or from a file of whole numbers (one per line, or a JSON list)."""

    kind: Literal["empirical"]
    values: list[PositiveInt] | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EmpiricalLength:
        if (self.values is None) == (self.file is None):
            raise ValueError("give either values or file")
        if self.values is not None and not self.values:
            raise ValueError("values is empty")
        return self


def _fixed_shorthand(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return {"kind": "fixed", "value": value}
    return value


Length = Annotated[FixedLength | UniformLength | NormalLength | LognormalLength | EmpiricalLength,
                   BeforeValidator(_fixed_shorthand), Field(discriminator="kind")]


class LongContext(Strict):
    share: Annotated[float, Field(ge=0, le=1)]
    tokens: Length


class SharedPrefix(Strict):
    """A system prompt of ``tokens`` shared by ``share`` of requests, one of ``groups`` different ones."""

    tokens: PositiveInt
    groups: PositiveInt = 1
    share: Annotated[float, Field(ge=0, le=1)] = 1.0


class PromptShape(Strict):
    tokens: Length = FixedLength(kind="fixed", value=64)
    long_context: LongContext | None = None
    shared_prefix: SharedPrefix | None = None


class OutputShape(Strict):
    tokens: Length = FixedLength(kind="fixed", value=64)


class Sessions(Strict):
    """Multi-turn conversations: each arrival starts one; later turns resend the whole history."""

    turns: Annotated[int, Field(ge=1, le=1000)]
    think_time: Seconds = 0.0


# -- arrivals -----------------------------------------------------------------------------------


class ClosedLoop(Strict):
    kind: Literal["closed"]
    concurrency: Annotated[int, Field(gt=0, le=10_000)]


class ConstantRate(Strict):
    kind: Literal["constant"]
    rate: Rate


class PoissonArrivals(Strict):
    kind: Literal["poisson"]
    rate: Rate


class GammaArrivals(Strict):
    """Gamma-distributed gaps with mean 1/rate; ``cv`` > 1 is burstier than Poisson (cv = 1)."""

    kind: Literal["gamma"]
    rate: Rate
    cv: Annotated[float, Field(gt=0)]


class Burst(Strict):
    at: Seconds
    count: Annotated[int, Field(gt=0, le=1_000_000)]


class BurstArrivals(Strict):
    kind: Literal["burst"]
    bursts: Annotated[list[Burst], Field(min_length=1)]


class RampArrivals(Strict):
    kind: Literal["ramp"]
    start_rate: Rate = Field(alias="from")
    end_rate: Rate = Field(alias="to")
    over: Annotated[float, BeforeValidator(parse_seconds), Field(gt=0)]
    shape: Literal["linear", "exponential"] = "linear"
    process: Literal["constant", "poisson"] = "constant"


class ReplayArrivals(Strict):
    """A recorded trace: JSON lines with ``t`` (seconds, any origin) and optionally
    ``prompt_tokens`` and ``output_tokens``."""

    kind: Literal["replay"]
    file: str
    speed: Annotated[float, Field(gt=0)] = 1.0


SimpleArrival = Annotated[ClosedLoop | ConstantRate | PoissonArrivals | GammaArrivals | BurstArrivals | RampArrivals,
                          Field(discriminator="kind")]


class Stage(Strict):
    duration: Annotated[float, BeforeValidator(parse_seconds), Field(gt=0)]
    arrival: SimpleArrival
    label: str | None = None


class StagedArrivals(Strict):
    kind: Literal["stages"]
    stages: Annotated[list[Stage], Field(min_length=1)]


Arrival = Annotated[ClosedLoop | ConstantRate | PoissonArrivals | GammaArrivals | BurstArrivals | RampArrivals
                    | StagedArrivals | ReplayArrivals, Field(discriminator="kind")]
FINITE_KINDS = ("burst", "ramp", "stages", "replay")


# -- the rest -----------------------------------------------------------------------------------


class Tenant(Strict):
    """A caller with its own key (read from the environment variable ``key_env``) and traffic."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    key_env: str | None = None
    arrival: Arrival | None = None
    weight: Annotated[float, Field(gt=0)] = 1.0
    model: str | None = None


class Slo(Strict):
    ttft: Seconds | None = None
    itl: Seconds | None = None
    e2e: Seconds | None = None


class MockChange(Strict):
    failure_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    drop_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    slow_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    slow_seconds: Seconds | None = None
    ttft: Seconds | None = None
    tokens_per_second: Annotated[float, Field(ge=0)] | None = None


class Fault(Strict):
    """From ``at`` for ``for`` seconds the mock upstream behaves as ``set`` says (needs ``--mock``)."""

    at: Seconds
    duration: Annotated[float, BeforeValidator(parse_seconds), Field(gt=0)] = Field(alias="for")
    set: MockChange


class Scenario(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str | None = None
    model: str | None = None
    endpoint: Literal["chat", "completions"] = "chat"
    stream: bool = True
    seed: int = 0
    duration: Annotated[float, BeforeValidator(parse_seconds), Field(gt=0)] | None = None
    requests: PositiveInt | None = None
    timeout: Annotated[float, BeforeValidator(parse_seconds), Field(gt=0)] = 60.0
    max_connections: Annotated[int, Field(gt=0, le=10_000)] = 1024
    arrival: Arrival
    prompt: PromptShape = PromptShape()
    output: OutputShape = OutputShape()
    sessions: Sessions | None = None
    tenants: list[Tenant] = []
    slo: Slo | None = None
    faults: list[Fault] = []

    @model_validator(mode="after")
    def _bounded(self) -> Scenario:
        arrivals = [self.arrival] + [tenant.arrival for tenant in self.tenants if tenant.arrival is not None]
        if self.duration is None and self.requests is None and any(a.kind not in FINITE_KINDS for a in arrivals):
            raise ValueError(f"{' and '.join(sorted({a.kind for a in arrivals if a.kind not in FINITE_KINDS}))} "
                             "arrivals never end by themselves: give duration or requests")
        if self.slo is not None and not self.stream and (self.slo.ttft is not None or self.slo.itl is not None):
            raise ValueError("slo.ttft and slo.itl need stream: true (a whole answer has no first token to time)")
        names = [tenant.name for tenant in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError("tenant names must be unique")
        return self


class ScenarioError(DocumentError):
    kind = "scenario"


def _external_files(data: dict[str, Any], base: Path) -> list[tuple[Path_, str]]:
    """Files a scenario names must exist (relative paths are relative to the scenario file)."""
    problems = []

    def check(path: Path_, value: Any) -> None:
        if isinstance(value, dict):
            if value.get("kind") in ("empirical", "replay") and isinstance(value.get("file"), str):
                if not (base / value["file"]).is_file():
                    problems.append((path + ("file",), f"file not found: {value['file']}"))
            for key, item in value.items():
                check(path + (key,), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                check(path + (index,), item)

    check((), data)
    return problems


def _drop_union_tags(path: Path_, data: dict) -> Path_:
    # pydantic puts the discriminator's value into the location ("arrival.poisson.rate").
    out: list[Any] = []
    node: Any = data
    tag_skipped = False
    for part in path:
        if isinstance(node, dict) and node.get("kind") == part and not tag_skipped:
            tag_skipped = True
            continue
        out.append(part)
        tag_skipped = False
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def load_scenario_text(text: str, source: str = "<scenario>", base: Path | None = None) -> Scenario:
    return load_document(text, source, Scenario, ScenarioError, "the scenario file is empty",
                         "a scenario is a mapping with at least name and arrival",
                         more_problems=lambda data: _external_files(data, base or Path.cwd()),
                         adjust_path=_drop_union_tags)


def load_scenario(path: Path | str) -> Scenario:
    path = Path(path)
    text = read_document(path, ScenarioError, "file not found")
    return load_scenario_text(text, str(path), path.resolve().parent)
