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
    """``policy_seen`` says when the policy follower last had an answer from the store (it notes
    that as soon as it reads the policy counter, before loading any version: a model that takes
    a minute to load is not staleness)."""

    def __init__(self, bound: float, policy_seen: Callable[[], float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bound = bound
        self._clock = clock
        self.keys_at = clock()  # last successful key-table refresh
        started = self.keys_at
        self._policy_seen = policy_seen or (lambda: started)

    def age(self) -> float:
        """Seconds since the older of the two copies was last confirmed current."""
        age = max(0.0, self._clock() - min(self.keys_at, self._policy_seen()))
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
