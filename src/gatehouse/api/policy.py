"""The policy part of the admin API: the same change control as ``gatehouse policy``.

People authenticate with their own admin key; the service layer checks their roles and the
separation of duties exactly as for the command line (the actor is ``person:<email>``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import RoleCheckedApi, body_text
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
        def work(actor: str, body: dict) -> dict:
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
        def work(actor: str, body: dict) -> dict:
            loaded = load_policy_text(body_text(body, "source"), "source")  # type: ignore[arg-type]
            row, created = change_control.propose(self.db, actor, loaded, body_text(body, "message"))  # type: ignore[arg-type]
            return {"version": row.hash, "state": row.state, "created": created}
        return await self._run(request, work, status=201, needs="policy-admin")

    async def approve(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            acks = body.get("acknowledge", [])
            if not isinstance(acks, list) or not all(isinstance(item, str) for item in acks):
                raise ApiError(400, "acknowledge must be a list of widening ids", "invalid_value", "acknowledge")
            approval = change_control.approve(self.db, actor, self._ref(request), body_text(body, "plan_id"), acks,  # type: ignore[arg-type]
                                       body_text(body, "note", required=False))
            return {"version": approval.version, "plan_id": approval.plan_id, "approver": approval.approver,
                    "acknowledged": approval.acknowledged}
        return await self._run(request, work, needs="approver")

    async def reject(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            row = change_control.reject(self.db, actor, self._ref(request), body_text(body, "reason"))  # type: ignore[arg-type]
            return {"version": row.hash, "state": row.state}
        return await self._run(request, work)

    async def apply(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            activation = change_control.apply(self.db, actor, self._ref(request))
            return versions.activation_dict(activation)
        return await self._run(request, work, needs="policy-admin")

    async def rollback(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            activation = change_control.rollback(self.db, actor, body_text(body, "reason"))  # type: ignore[arg-type]
            return versions.activation_dict(activation)
        return await self._run(request, work, needs="policy-admin")

    async def break_glass(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            if ("source" in body) == ("version" in body):
                raise ApiError(400, "send either source (the policy text) or version (a stored one)", "invalid_value")
            if "source" in body:
                loaded = load_policy_text(body_text(body, "source"), "source")  # type: ignore[arg-type]
            else:
                with self.db.read() as session:
                    loaded = versions.loaded_version(versions.find_version(session, body_text(body, "version")))  # type: ignore[arg-type]
            ttl = parse_duration(body_text(body, "ttl", required=False) or "1h")
            activation, planned = change_control.break_glass(self.db, actor, loaded, body_text(body, "reason"), ttl)  # type: ignore[arg-type]
            delivered = notify(self.settings.notify_webhook, change_control.break_glass_event(activation, planned))
            return {**versions.activation_dict(activation), "notification": delivered}
        return await self._run(request, work, needs="policy-admin")
