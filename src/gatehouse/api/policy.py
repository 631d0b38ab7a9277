"""The policy part of the admin API: the same change control as ``gatehouse policy``.

People authenticate with their own admin key; the service layer checks their roles and the
separation of duties exactly as for the command line (the actor is ``person:<email>``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import RoleCheckedApi, optional_duration, optional_text, required_text
from gatehouse.api.errors import ApiError, from_domain
from gatehouse.core.webhook import notify
from gatehouse.policy import change_control, planning, versions
from gatehouse.policy import views as policy_views
from gatehouse.policy import workers as policy_workers
from gatehouse.policy.loader import PolicyError, load_policy_text

READERS = frozenset({"auditor", "identity-admin", "policy-admin", "approver"})  # identity-admin and auditor read everything


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
            row, created = change_control.propose(self.db, actor, loaded, required_text(body, "message"), settings=self.settings)
            return {"version": row.hash, "state": row.state, "created": created}
        return await self._run(request, work, status=201, needs="policy-admin", fields=("source", "message"))

    async def plan_source(self, request: Request) -> Response:
        """The plan of a document not proposed yet (``source``), against the approved baseline or
        against another document (``against``), over the store's inventory."""
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            candidate = load_policy_text(required_text(body, "source"), "source")
            against = optional_text(body, "against")
            if against is None:
                return planning.plan_document(self.db, candidate).as_dict()
            try:
                before = load_policy_text(against, "against")
            except PolicyError as exc:
                error = from_domain(exc)
                error.param = "against"
                raise error from None
            return planning.plan_between(self.db, before, candidate).as_dict()
        return await self._run(request, work, read=True, fields=("source", "against"))

    async def approve(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            acks = body.get("acknowledge", [])
            if not isinstance(acks, list) or not all(isinstance(item, str) for item in acks):
                raise ApiError(400, "acknowledge must be a list of widening ids", "invalid_value", "acknowledge")
            approval = change_control.approve(self.db, actor, self._ref(request), required_text(body, "plan_id"), acks,
                                       optional_text(body, "note"))
            return {"version": approval.version, "plan_id": approval.plan_id, "approver": approval.approver,
                    "acknowledged": approval.acknowledged}
        return await self._run(request, work, needs="approver", fields=("plan_id", "acknowledge", "note"))

    async def reject(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            row = change_control.reject(self.db, actor, self._ref(request), required_text(body, "reason"))
            return {"version": row.hash, "state": row.state}
        return await self._run(request, work, fields=("reason",))

    async def apply(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            activation = change_control.apply(self.db, actor, self._ref(request))
            return versions.activation_dict(activation)
        return await self._run(request, work, needs="policy-admin")

    async def rollback(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            activation = change_control.rollback(self.db, actor, required_text(body, "reason"))
            return versions.activation_dict(activation)
        return await self._run(request, work, needs="policy-admin", fields=("reason",))

    async def break_glass(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            if ("source" in body) == ("version" in body):
                raise ApiError(400, "send either source (the policy text) or version (a stored one)", "invalid_value")
            if "source" in body:
                loaded = load_policy_text(required_text(body, "source"), "source")
            else:
                with self.db.read() as session:
                    loaded = versions.loaded_version(versions.find_version(session, required_text(body, "version")))
            ttl = optional_duration(body, "ttl", "1h")
            assert ttl is not None
            activation, planned = change_control.break_glass(self.db, actor, loaded, required_text(body, "reason"), ttl,
                                                               settings=self.settings)
            delivered = notify(self.settings.notify_webhook, change_control.break_glass_event(activation, planned))
            return {**versions.activation_dict(activation), "notification": delivered}
        return await self._run(request, work, needs="policy-admin", fields=("source", "version", "reason", "ttl"))

    async def review_break_glass(self, request: Request) -> Response:
        """Someone looks back at a break-glass activation (``seq``) and says what they found; until
        then it is shown in ``policy status`` and the findings."""
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            seq = self._path(request, "seq")
            if not seq.isdigit() or len(seq) > 18:
                raise ApiError(400, "seq is the activation's number (see policy status)", "invalid_value", "seq")
            row = change_control.review_break_glass(self.db, actor, int(seq), required_text(body, "note"))
            return {**versions.activation_dict(row), "reviewed_by": row.reviewed_by, "reviewed_at": row.reviewed_at,
                    "review_note": row.review_note}
        return await self._run(request, work, fields=("note",))
