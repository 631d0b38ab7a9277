"""Try the route's deployments in order until one answers.

A deployment that cannot answer (connection refused, 5xx, 408/429, timeout before the
first token, queue full) hands over to the next one. A deployment that rejects the
request itself (another 4xx) ends the route: the next one would reject it too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gatehouse.engines.base import Engine, EngineBusy, EngineFailure, EngineReply, UpstreamRejected


@dataclass(frozen=True)
class Attempt:
    deployment: str
    reason: str
    started: float = 0.0  # perf_counter instants, for traces
    ended: float = 0.0

    def __str__(self) -> str:
        return f"{self.deployment}={self.reason}"


class NoDeploymentAnswered(Exception):
    def __init__(self, attempts: list[Attempt], retry_after: int | None) -> None:
        self.attempts = attempts
        self.retry_after = retry_after
        super().__init__(", ".join(map(str, attempts)))

    @property
    def status(self) -> int:
        """400 if no deployment serves the endpoint, 429 if every one was busy, 504 if the
        last timed out, 503 if none could be reached, 502 otherwise."""
        reasons = [attempt.reason for attempt in self.attempts]
        if reasons and all(reason == "unsupported" for reason in reasons):
            return 400
        if reasons and all(reason == "busy" for reason in reasons):
            return 429
        if reasons and reasons[-1] == "timeout":
            return 504
        if reasons and all(reason in ("connect", "shutting_down", "unsupported") for reason in reasons):
            return 503
        return 502


async def dispatch(
    route: Sequence[str],
    engines: Mapping[str, Engine],
    endpoint: str,
    body: dict[str, Any],
    stream: bool,
    caller: str = "",
    request_id: str = "",
) -> tuple[str, EngineReply, list[Attempt]]:
    """Returns the deployment that answered, its reply, and the failed attempts before it."""
    attempts: list[Attempt] = []
    retry_after: int | None = None
    for name in route:
        engine = engines[name]
        started = time.perf_counter()
        if not engine.supports(endpoint):
            attempts.append(Attempt(name, "unsupported", started, started))
            continue
        try:
            reply = await engine.call(endpoint, body, stream, caller, request_id)
        except EngineBusy as busy:
            attempts.append(Attempt(name, "busy", started, time.perf_counter()))
            retry_after = busy.retry_after
            continue
        except EngineFailure as failure:
            attempts.append(Attempt(name, failure.kind, started, time.perf_counter()))
            continue
        except UpstreamRejected as rejected:  # the request itself is refused: no other deployment will differ
            rejected.deployment, rejected.attempts = name, attempts
            raise
        return name, reply, attempts
    raise NoDeploymentAnswered(attempts, retry_after)
