"""Workload identities over the admin API (``gatehouse identity …``).

identity-admins and auditors read every identity; anyone else reads the identities they own or
back up (the list is filtered; another one answers 403, whether or not it exists). Approving,
rejecting, clearing an attention flag and moving an identity need identity-admin, checked
before a body is read; every other rule (who may resume, raise a clearance, request an identity)
is the service layer's.

A move is planned, shown, then confirmed: ``transfer`` carries the plan the person confirmed
(``expect``); the plan is computed again and a difference answers 409 ``plan_changed``, and
``transfer_identity`` judges it a third time inside its own transaction.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import (
    MAX_EMAIL,
    MAX_NAME,
    RoleCheckedApi,
    actor_of,
    optional_labels,
    optional_text,
    required_object,
    required_text,
)
from gatehouse.api.errors import ApiError
from gatehouse.authz import Forbidden
from gatehouse.core.errors import GatehouseError, NotFound
from gatehouse.identity import service
from gatehouse.identity.admin_keys import AdminPrincipal
from gatehouse.identity.governance import decide_identity, set_clearance
from gatehouse.identity.lifecycle import clear_attention
from gatehouse.oversight.transfers import TransferPlan, plan_transfer, transfer_identity
from gatehouse.store.db import Database

ADMIN = "identity-admin"
SEE_EVERYTHING = frozenset({"identity-admin", "auditor"})
CREATE_FIELDS = ("name", "owner", "team", "environment", "purpose", "backup_owner", "data_clearance", "labels")


def sees_everything(principal: AdminPrincipal) -> bool:
    return bool(principal.roles & SEE_EVERYTHING)


def visible_identities(db: Database, principal: AdminPrincipal) -> set[str] | None:
    """The names of the identities ``principal`` may read: None for all of them."""
    if sees_everything(principal):
        return None
    me = service.get_person(db, principal.email).id
    return {identity.name for identity, _ in service.list_identities(db)
            if me in (identity.owner_id, identity.backup_owner_id)}


def refused(principal: AdminPrincipal, name: str) -> ApiError:
    return ApiError(403, f"{principal.email} may read only identities they own or back up (or hold "
                         f"{' or '.join(sorted(SEE_EVERYTHING))}); {name!r} is not one of them", "forbidden")


def check_visible(db: Database, principal: AdminPrincipal, name: str) -> dict[str, Any]:
    """The identity as ``identity show --json`` prints it, if ``principal`` may read it."""
    if sees_everything(principal):
        return service.describe_identity(db, name)
    try:
        info = service.describe_identity(db, name)
    except NotFound:
        raise refused(principal, name) from None
    if principal.email not in (info["owner"], info["backup_owner"]):
        raise refused(principal, name)
    return info


def plan_body(plan: TransferPlan) -> dict[str, Any]:
    """The plan as JSON carries it, so that what a client sends back compares equal."""
    body: dict[str, Any] = orjson.loads(orjson.dumps(plan.as_dict()))
    return body


class IdentityApi(RoleCheckedApi):

    def _name(self, request: Request) -> str:
        return self._path(request, "name")

    async def identities(self, request: Request) -> Response:
        def work(principal: AdminPrincipal, body: dict[str, Any]) -> dict[str, Any]:
            visible = visible_identities(self.db, principal)
            return {"identities": [
                {"name": i.name, "owner": o.email, "team": i.team, "environment": i.environment, "status": i.status,
                 "purpose": i.purpose}
                for i, o in service.list_identities(self.db) if visible is None or i.name in visible]}
        return await self._call(request, work)

    async def show(self, request: Request) -> Response:
        return await self._call(request, lambda principal, body: check_visible(self.db, principal, self._name(request)))

    async def create(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            identity = service.create_identity(
                self.db, actor, required_text(body, "name", 100), required_text(body, "owner", MAX_EMAIL),
                team=optional_text(body, "team", 100), environment=optional_text(body, "environment", 50) or "dev",
                purpose=optional_text(body, "purpose", 2000),
                backup_owner_email=optional_text(body, "backup_owner", MAX_EMAIL),
                data_clearance=optional_text(body, "data_clearance", 32) or "internal",
                labels=optional_labels(body, "labels"), exempt_environments=self.settings.approval_exempt)
            return service.describe_identity(self.db, identity.name)
        return await self._run(request, work, status=201, fields=CREATE_FIELDS)

    async def _status(self, request: Request, action: str) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            identity = service.change_identity_status(self.db, actor, self._name(request), action,
                                                      optional_text(body, "reason", MAX_NAME * 10))
            return {"name": identity.name, "status": identity.status}
        return await self._run(request, work, fields=("reason",))

    async def suspend(self, request: Request) -> Response:
        return await self._status(request, "suspend")

    async def resume(self, request: Request) -> Response:
        return await self._status(request, "resume")

    async def retire(self, request: Request) -> Response:
        return await self._status(request, "retire")

    async def _decide(self, request: Request, approve: bool) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            identity = decide_identity(self.db, actor, self._name(request), approve,
                                       optional_text(body, "reason", MAX_NAME * 10))
            return {"name": identity.name, "status": identity.status}
        return await self._run(request, work, needs=ADMIN, fields=("reason",))

    async def approve(self, request: Request) -> Response:
        return await self._decide(request, True)

    async def reject(self, request: Request) -> Response:
        return await self._decide(request, False)

    async def clearance(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            identity = set_clearance(self.db, actor, self._name(request), required_text(body, "clearance", 32))
            return {"name": identity.name, "data_clearance": identity.data_clearance}
        return await self._run(request, work, fields=("clearance",))

    async def attended(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            identity = clear_attention(self.db, actor, self._name(request), optional_text(body, "note", MAX_NAME * 10))
            return {"name": identity.name, "attention": identity.attention}
        return await self._run(request, work, needs=ADMIN, fields=("note",))

    def _planned(self, principal: AdminPrincipal, request: Request, body: dict[str, Any]) -> TransferPlan:
        owner, team = optional_text(body, "owner", MAX_EMAIL), optional_text(body, "team", 100)
        if owner is None and team is None:
            raise ApiError(400, "give owner, team or both", "invalid_value", "owner")
        check_visible(self.db, principal, self._name(request))
        return plan_transfer(self.db, self._name(request), owner, team)

    async def plan_transfer(self, request: Request) -> Response:
        return await self._call(request, lambda principal, body: plan_body(self._planned(principal, request, body)),
                                 fields=("owner", "team"))

    async def transfer(self, request: Request) -> Response:
        def work(principal: AdminPrincipal, body: dict[str, Any]) -> dict[str, Any]:
            expect = required_object(body, "expect")
            plan = self._planned(principal, request, body)
            if plan_body(plan) != expect:
                raise self._changed()
            try:
                transfer_identity(self.db, actor_of(principal), plan)
            except (Forbidden, NotFound):
                raise
            except GatehouseError:
                # the move was judged again in its own transaction: if what it saw differs from
                # the plan, say so as a changed plan; anything else is the service's own answer
                if plan_body(self._planned(principal, request, body)) != expect:
                    raise self._changed() from None
                raise
            return plan_body(plan)
        return await self._call(request, work, needs=ADMIN, fields=("owner", "team", "expect"))

    def _changed(self) -> ApiError:
        return ApiError(409, "the identity, its people or the active policy changed since the plan was shown: "
                             "plan the move again and confirm what it shows now", "plan_changed", "expect")
