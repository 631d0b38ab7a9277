"""The policy part of the admin API: the same change control as ``gatehouse policy``.

People authenticate with their own admin key; the service layer checks their roles and the
separation of duties exactly as for the command line (the actor is ``person:<email>``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gatehouse.config import Settings
from gatehouse.dataplane.errors import ApiError
from gatehouse.dataplane.validation import read_json_body_any
from gatehouse.durations import parse_duration
from gatehouse.errors import Conflict, GatehouseError, NotFound
from gatehouse.identity.admin_keys import AdminAuthError, AdminPrincipal, authenticate_admin
from gatehouse.identity.governance import Forbidden
from gatehouse.identity.notify import notify
from gatehouse.policy import control
from gatehouse.policy.loader import PolicyError, load_policy_text
from gatehouse.store.db import Database

READERS = frozenset({"auditor", "policy-admin", "approver"})
MAX_POLICY_BYTES = 1024 * 1024


def _error(exc: Exception) -> ApiError:
    if isinstance(exc, PolicyError):
        return ApiError(400, "invalid policy: " + "; ".join(str(p) for p in exc.problems), "invalid_policy", "source")
    if isinstance(exc, Forbidden):
        return ApiError(403, str(exc), "forbidden")
    if isinstance(exc, NotFound):
        return ApiError(404, str(exc), "not_found")
    if isinstance(exc, control.StalePlan):
        return ApiError(409, str(exc), "stale_plan", "plan_id")
    if isinstance(exc, control.NotApproved):
        return ApiError(409, str(exc), "not_approved")
    if isinstance(exc, Conflict):
        return ApiError(409, str(exc), "conflict")
    return ApiError(400, str(exc), "invalid_request")


def _text(body: dict, name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{name} must be a non-empty string", "invalid_value", name)
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        raise ApiError(400, f"{name} contains control characters", "invalid_value", name)
    return value


class RoleCheckedApi:
    """People's admin keys in, the service layer's checks and errors out, in the OpenAI format."""

    readers: frozenset[str] = READERS  # roles that may read

    def __init__(self, db: Database, pepper: bytes, settings: Settings) -> None:
        self.db = db
        self.pepper = pepper
        self.settings = settings

    async def _principal(self, request: Request, read: bool) -> AdminPrincipal:
        try:
            principal = await asyncio.to_thread(authenticate_admin, self.db, self.pepper,
                                                request.headers.get("authorization"))
        except AdminAuthError as exc:
            raise ApiError(exc.status, exc.message, exc.code) from None
        if read and not principal.roles & self.readers:
            raise ApiError(403, f"{principal.email} needs one of the roles {', '.join(sorted(self.readers))}",
                           "admin_forbidden")
        return principal

    async def _run(self, request: Request, work: Callable[[str, dict], Any], read: bool = False,
                   status: int = 200, needs: str | None = None) -> Response:
        try:
            principal = await self._principal(request, read)
            if needs is not None and needs not in principal.roles:  # before reading a body that may be hostile
                raise ApiError(403, f"{principal.email} needs the {needs} role", "forbidden")
            body: dict = {}
            empty = request.headers.get("content-length") in (None, "0") and "transfer-encoding" not in request.headers
            if request.method == "POST" and not empty:  # apply takes no body
                _, body = await read_json_body_any(request, MAX_POLICY_BYTES)
                if not isinstance(body, dict):
                    raise ApiError(400, "the body must be a JSON object", "invalid_json")
            try:
                result = await asyncio.to_thread(work, f"person:{principal.email}", body)
            except (GatehouseError, PolicyError, ValueError) as exc:
                raise _error(exc) from None
        except ApiError as error:
            return error.response()
        return Response(orjson.dumps(result, default=str), status_code=status, media_type="application/json")

    def _ref(self, request: Request) -> str:
        return request.path_params["ref"]


class PolicyAdminApi(RoleCheckedApi):

    async def status(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            control.expire_break_glass(self.db)
            return control.status(self.db)
        return await self._run(request, work, read=True)

    async def versions(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: {"versions": control.version_rows(self.db)}, read=True)

    async def version(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: control.describe_version(self.db, self._ref(request)),
                               read=True)

    async def plan(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: control.plan_version(self.db, self._ref(request)).as_dict(),
                               read=True)

    async def propose(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            loaded = load_policy_text(_text(body, "source"), "source")  # type: ignore[arg-type]
            row, created = control.propose(self.db, actor, loaded, _text(body, "message"))  # type: ignore[arg-type]
            return {"version": row.hash, "state": row.state, "created": created}
        return await self._run(request, work, status=201, needs="policy-admin")

    async def approve(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            acks = body.get("acknowledge", [])
            if not isinstance(acks, list) or not all(isinstance(item, str) for item in acks):
                raise ApiError(400, "acknowledge must be a list of widening ids", "invalid_value", "acknowledge")
            approval = control.approve(self.db, actor, self._ref(request), _text(body, "plan_id"), acks,  # type: ignore[arg-type]
                                       _text(body, "note", required=False))
            return {"version": approval.version, "plan_id": approval.plan_id, "approver": approval.approver,
                    "acknowledged": approval.acknowledged}
        return await self._run(request, work, needs="approver")

    async def reject(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            row = control.reject(self.db, actor, self._ref(request), _text(body, "reason"))  # type: ignore[arg-type]
            return {"version": row.hash, "state": row.state}
        return await self._run(request, work)

    async def apply(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            activation = control.apply(self.db, actor, self._ref(request))
            return control.activation_dict(activation)
        return await self._run(request, work, needs="policy-admin")

    async def rollback(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            activation = control.rollback(self.db, actor, _text(body, "reason"))  # type: ignore[arg-type]
            return control.activation_dict(activation)
        return await self._run(request, work, needs="policy-admin")

    async def break_glass(self, request: Request) -> Response:
        def work(actor: str, body: dict) -> dict:
            if ("source" in body) == ("version" in body):
                raise ApiError(400, "send either source (the policy text) or version (a stored one)", "invalid_value")
            if "source" in body:
                loaded = load_policy_text(_text(body, "source"), "source")  # type: ignore[arg-type]
            else:
                with self.db.read() as session:
                    loaded = control.loaded_version(control.find_version(session, _text(body, "version")))  # type: ignore[arg-type]
            ttl = parse_duration(_text(body, "ttl", required=False) or "1h")
            activation, planned = control.break_glass(self.db, actor, loaded, _text(body, "reason"), ttl)  # type: ignore[arg-type]
            delivered = notify(self.settings.notify_webhook, control.break_glass_event(activation, planned))
            return {**control.activation_dict(activation), "notification": delivered}
        return await self._run(request, work, needs="policy-admin")
