"""``/healthz``."""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gatehouse.runtime.enforced import PolicyFollower
from gatehouse.runtime.freshness import Freshness
from gatehouse.runtime.keytable import KeyTable
from gatehouse.runtime.records import RecordWriter


class Health:
    def __init__(self, follower: PolicyFollower, keys: KeyTable, records: RecordWriter, freshness: Freshness) -> None:
        self.follower = follower
        self.keys = keys
        self.records = records
        self.freshness = freshness

    async def health(self, request: Request) -> Response:
        """200 while this worker serves; 503 (so a load balancer takes it out) while it refuses:
        its copy of keys and policy is older than the bound, or it cannot keep evidence."""
        # Whether the active version could be loaded, not why: the reason (a credential's
        # variable name, a file path) is for `policy status`, which needs a role.
        follower, records = self.follower, self.records
        stale, accepting = self.freshness.stale, records.accepting
        status = "control_plane_unreachable" if stale else "evidence_unavailable" if not accepting else "ok"
        body = {"status": status, "policy_version": follower.current.policy.version,
                "policy_current": follower.problem is None, "keys_revision": self.keys.revision,
                "control_plane_age_seconds": round(self.freshness.age(), 1), "max_staleness_seconds": self.freshness.bound,
                "evidence": {"spool_bytes": records.spool.pending, "store_reachable": records.store_down_since is None,
                             "lost": records.lost, "set_aside": records.set_aside},
                "worker": follower.worker, "worker_pid": os.getpid()}
        return JSONResponse(body, status_code=200 if status == "ok" else 503)
