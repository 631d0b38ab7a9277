"""The base of every admin endpoint: a person's admin key in, their roles checked before a
body is read, the service layer's errors out in the OpenAI error shape.

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

from gatehouse.api.errors import ApiError, from_domain
from gatehouse.api.validation import read_json_body_any
from gatehouse.core.config import Settings
from gatehouse.core.errors import GatehouseError
from gatehouse.identity.admin_keys import AdminAuthError, AdminPrincipal, authenticate_admin
from gatehouse.policy.loader import PolicyError
from gatehouse.store.db import Database

MAX_POLICY_BYTES = 1024 * 1024


def optional_text(body: dict[str, Any], name: str) -> str | None:
    """A string field of an admin request's body, or None when absent; refused (400) when it is
    not a non-empty string or holds control characters."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{name} must be a non-empty string", "invalid_value", name)
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        raise ApiError(400, f"{name} contains control characters", "invalid_value", name)
    return value


def required_text(body: dict[str, Any], name: str) -> str:
    value = optional_text(body, name)
    if value is None:
        raise ApiError(400, f"{name} must be a non-empty string", "invalid_value", name)
    return value


def admin_person(db: Database, pepper: bytes, authorization: str | None) -> AdminPrincipal:
    """The person whose admin key ``authorization`` carries, or ApiError (401, or 403 for a
    workload key). Reads the store: call it off the event loop."""
    try:
        return authenticate_admin(db, pepper, authorization)
    except AdminAuthError as exc:
        raise from_domain(exc) from None


async def authenticated_person(db: Database, pepper: bytes, request: Request) -> AdminPrincipal:
    return await asyncio.to_thread(admin_person, db, pepper, request.headers.get("authorization"))


class RoleCheckedApi:
    """People's admin keys in, the service layer's checks and errors out, in the OpenAI format."""

    readers: frozenset[str] = frozenset()  # roles that may read; each API names its own

    def __init__(self, db: Database, pepper: bytes, settings: Settings) -> None:
        self.db = db
        self.pepper = pepper
        self.settings = settings

    async def _principal(self, request: Request, read: bool) -> AdminPrincipal:
        principal = await authenticated_person(self.db, self.pepper, request)
        if read and not principal.roles & self.readers:
            raise ApiError(403, f"{principal.email} needs one of the roles {', '.join(sorted(self.readers))}",
                           "admin_forbidden")
        return principal

    async def _run(self, request: Request, work: Callable[[str, dict[str, Any]], Any], read: bool = False,
                   status: int = 200, needs: str | None = None) -> Response:
        try:
            principal = await self._principal(request, read)
            if needs is not None and needs not in principal.roles:  # before reading a body that may be hostile
                raise ApiError(403, f"{principal.email} needs the {needs} role", "forbidden")
            body: dict[str, Any] = {}
            empty = request.headers.get("content-length") in (None, "0") and "transfer-encoding" not in request.headers
            if request.method == "POST" and not empty:  # apply takes no body
                _, body = await read_json_body_any(request, MAX_POLICY_BYTES)
                if not isinstance(body, dict):
                    raise ApiError(400, "the body must be a JSON object", "invalid_json")
            try:
                result = await asyncio.to_thread(work, f"person:{principal.email}", body)
            except (GatehouseError, PolicyError, ValueError) as exc:
                raise from_domain(exc) from None
        except ApiError as error:
            return error.response()
        if isinstance(result, Response):
            return result
        return Response(orjson.dumps(result, default=str), status_code=status, media_type="application/json")

    def _ref(self, request: Request) -> str:
        return str(request.path_params["ref"])
