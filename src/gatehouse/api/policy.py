"""The policy part of the admin API: the same change control as ``gatehouse policy``.

People authenticate with their own admin key; the service layer checks their roles and the
separation of duties exactly as for the command line (the actor is ``person:<email>``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import RoleCheckedApi, optional_text, required_text
from gatehouse.api.errors import ApiError
from gatehouse.core.durations import parse_duration
from gatehouse.core.webhook import notify
from gatehouse.policy import change_control, planning, versions
from gatehouse.policy import views as policy_views
from gatehouse.policy import workers as policy_workers
from gatehouse.policy.loader import load_policy_text

READERS = frozenset({"auditor", "policy-admin", "approver"})


class PolicyAdminApi(RoleCheckedApi):
    readers = READERS

    async def status(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            change_control.expire_break_glass(self.db)
            return policy_workers.status(self.db)
        return await self._run(request, work, read=True)

    async def versions(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: {"versions": policy_views.version_rows(self.db)}, read=True)

    async def version(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: policy_views.describe_version(self.db, self._ref(request)),
                               read=True)

    async def plan(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: planning.plan_version(self.db, self._ref(request)).as_dict(),
                               read=True)

    async def propose(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            loaded = load_policy_text(required_text(body, "source"), "source")
            row, created = change_control.propose(self.db, actor, loaded, required_text(body, "message"))
            return {"version": row.hash, "state": row.state, "created": created}
        return await self._run(request, work, status=201, needs="policy-admin")

    async def approve(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            acks = body.get("acknowledge", [])
            if not isinstance(acks, list) or not all(isinstance(item, str) for item in acks):
                raise ApiError(400, "acknowledge must be a list of widening ids", "invalid_value", "acknowledge")
            approval = change_control.approve(self.db, actor, self._ref(request), required_text(body, "plan_id"), acks,
                                       optional_text(body, "note"))
            return {"version": approval.version, "plan_id": approval.plan_id, "approver": approval.approver,
                    "acknowledged": approval.acknowledged}
        return await self._run(request, work, needs="approver")

    async def reject(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            row = change_control.reject(self.db, actor, self._ref(request), required_text(body, "reason"))
            return {"version": row.hash, "state": row.state}
        return await self._run(request, work)

    async def apply(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            activation = change_control.apply(self.db, actor, self._ref(request))
            return versions.activation_dict(activation)
        return await self._run(request, work, needs="policy-admin")

    async def rollback(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            activation = change_control.rollback(self.db, actor, required_text(body, "reason"))
            return versions.activation_dict(activation)
        return await self._run(request, work, needs="policy-admin")

    async def break_glass(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            if ("source" in body) == ("version" in body):
                raise ApiError(400, "send either source (the policy text) or version (a stored one)", "invalid_value")
            if "source" in body:
                loaded = load_policy_text(required_text(body, "source"), "source")
            else:
                with self.db.read() as session:
                    loaded = versions.loaded_version(versions.find_version(session, required_text(body, "version")))
            ttl = parse_duration(optional_text(body, "ttl") or "1h")
            activation, planned = change_control.break_glass(self.db, actor, loaded, required_text(body, "reason"), ttl)
            delivered = notify(self.settings.notify_webhook, change_control.break_glass_event(activation, planned))
            return {**versions.activation_dict(activation), "notification": delivered}
        return await self._run(request, work, needs="policy-admin")
