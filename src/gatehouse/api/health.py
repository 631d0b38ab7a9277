"""``/healthz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import os

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gatehouse.runtime.enforced import PolicyFollower
from gatehouse.runtime.keytable import KeyTable
from gatehouse.telemetry import exposition


class Health:
    def __init__(self, follower: PolicyFollower, keys: KeyTable) -> None:
        self.follower = follower
        self.keys = keys

    async def health(self, request: Request) -> Response:
        # Whether the active version could be loaded, not why: the reason (a credential's
        # variable name, a file path) is for `policy status`, which needs a role.
        follower = self.follower
        return JSONResponse({"status": "ok", "policy_version": follower.current.policy.version,
                             "policy_current": follower.problem is None, "keys_revision": self.keys.revision,
                             "worker": follower.worker, "worker_pid": os.getpid()})

    async def metrics(self, request: Request) -> Response:
        return Response(await asyncio.to_thread(exposition.render), media_type=exposition.CONTENT_TYPE)
