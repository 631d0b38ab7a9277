"""How current this worker's view of the control plane is, and the bound past which it refuses.

The key table and the enforced policy are copies of the store, refreshed a few times a
second. While the store cannot be reached the copies age: a key revoked meanwhile would
still be honoured. Past ``bound`` seconds without a successful refresh of both, the worker
refuses inference (503 ``control_plane_unreachable``) rather than honour revocations it
cannot see; the first refresh that succeeds ends the refusal, and it loads every change made
meanwhile (both refreshes read everything newer than the revision they hold).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from gatehouse.telemetry import evidence_metrics as metrics


class Freshness:
    def __init__(self, bound: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.bound = bound
        self._clock = clock
        now = clock()
        self.keys_at = now    # last successful key-table refresh
        self.policy_at = now  # last successful policy poll

    def age(self) -> float:
        """Seconds since the older of the two copies was last confirmed current."""
        age = max(0.0, self._clock() - min(self.keys_at, self.policy_at))
        metrics.STALENESS.set(age)
        return age

    @property
    def stale(self) -> bool:
        return self.age() > self.bound

    def keys_after(self, refresh: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        """``refresh`` of the key table (a background job), noting each run that succeeds."""
        async def tracked() -> Any:
            result = await refresh()
            self.keys_at = self._clock()
            return result
        return tracked

    def policy_after(self, poll: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        """``poll`` of the policy counter (a background job), noting each run that succeeds."""
        async def tracked() -> Any:
            result = await poll()
            self.policy_at = self._clock()
            return result
        return tracked
