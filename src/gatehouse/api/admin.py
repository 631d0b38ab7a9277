"""The base of every admin endpoint: a person authenticated, their roles checked before a body
is read, the body's fields checked, the service layer's errors out in the OpenAI error shape,
and a request id on every answer.

Who is calling is the one question the HTTP layer answers itself, through an
``Authenticator`` (an admin key today, ``AdminKeyAuthenticator``; an OIDC or SSO token can be
another one). The service layer checks roles and the separation of duties exactly as for every
other entry point; the actor it is given is ``person:<email>`` of whoever authenticated, never
a name a caller sends.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.errors import ApiError, from_domain
from gatehouse.api.validation import read_json_body_any
from gatehouse.core.config import Settings
from gatehouse.core.durations import is_zero_duration, parse_duration
from gatehouse.core.errors import GatehouseError
from gatehouse.identity.admin_keys import AdminAuthError, AdminPrincipal, authenticate_admin
from gatehouse.policy.loader import PolicyError
from gatehouse.store.db import Database

log = logging.getLogger("gatehouse.admin")

MAX_POLICY_BYTES = 1024 * 1024
REQUEST_ID_HEADER = "x-gatehouse-request-id"
# Field lengths the store can hold (an actor is recorded as ``person:<email>`` in 200 characters).
MAX_EMAIL = 190
MAX_NAME = 200
MAX_TEXT = 10_000


def new_request_id() -> str:
    """``req_…``, the same shape as the inference endpoints' request ids."""
    return "req_" + secrets.token_hex(12)


# -- who is calling -----------------------------------------------------------------------

class Authenticator(Protocol):
    """Turns a request's ``Authorization`` header into the person making it, or raises
    (``AdminAuthError`` or ``ApiError``: 401 for no or a bad credential, 403 for one that may
    never call the admin API). Reads the store: it is called off the event loop."""

    def authenticate(self, db: Database, authorization: str | None) -> AdminPrincipal: ...


class AdminKeyAuthenticator:
    """People's admin keys (``gatehouse person admin-key``), HMACed under the installation's pepper."""

    def __init__(self, pepper: bytes) -> None:
        self.pepper = pepper

    def authenticate(self, db: Database, authorization: str | None) -> AdminPrincipal:
        return authenticate_admin(db, self.pepper, authorization)


def admin_person(db: Database, pepper: bytes, authorization: str | None) -> AdminPrincipal:
    """The person whose admin key ``authorization`` carries, or ApiError (401, or 403 for a
    workload key). Reads the store: call it off the event loop."""
    try:
        return AdminKeyAuthenticator(pepper).authenticate(db, authorization)
    except AdminAuthError as exc:
        raise from_domain(exc) from None


# -- reading a body's fields --------------------------------------------------------------

def _bad(name: str, message: str) -> ApiError:
    return ApiError(400, message, "invalid_value", name)


def check_fields(body: dict[str, Any], fields: Collection[str]) -> None:
    """Refuse a field the endpoint does not take (a name of someone to act as, say): 400 naming it."""
    unknown = sorted(set(body) - set(fields))
    if unknown:
        takes = ", ".join(sorted(fields)) if fields else "no fields"
        raise ApiError(400, f"unknown field {unknown[0]!r}: this endpoint takes {takes}", "unknown_field", unknown[0])


def optional_text(body: dict[str, Any], name: str, max_length: int | None = None) -> str | None:
    """A string field of an admin request's body, or None when absent; refused (400) when it is
    not a non-empty string, is longer than ``max_length`` or holds control characters."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(name, f"{name} must be a non-empty string")
    if max_length is not None and len(value) > max_length:
        raise _bad(name, f"{name} is longer than {max_length} characters")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        raise _bad(name, f"{name} contains control characters")
    return value


def required_text(body: dict[str, Any], name: str, max_length: int | None = None) -> str:
    value = optional_text(body, name, max_length)
    if value is None:
        raise _bad(name, f"{name} is required: a non-empty string")
    return value


def optional_duration(body: dict[str, Any], name: str, default: str | None = None,
                      zero: bool = False) -> timedelta | None:
    """A duration such as ``30d`` or ``12h`` (``0s`` too where ``zero``), or the default."""
    text = optional_text(body, name, 40)
    if text is None:
        text = default
    if text is None:
        return None
    if zero and is_zero_duration(text):
        return timedelta(0)
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise _bad(name, f"{name}: {exc}") from None


def required_duration(body: dict[str, Any], name: str) -> timedelta:
    if body.get(name) is None:
        raise _bad(name, f"{name} is required: a duration such as 14d")
    value = optional_duration(body, name)
    assert value is not None
    return value


def optional_text_list(body: dict[str, Any], name: str, max_items: int = 1000,
                       max_length: int = MAX_NAME) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > max_items:
        raise _bad(name, f"{name} must be a list of at most {max_items} strings")
    for item in value:
        if (not isinstance(item, str) or not item.strip() or len(item) > max_length
                or any(ord(c) < 32 for c in item)):
            raise _bad(name, f"{name} must hold non-empty strings of at most {max_length} characters")
    return list(value)


def optional_labels(body: dict[str, Any], name: str, max_items: int = 100) -> dict[str, str] | None:
    """A JSON object of string keys to string values."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > max_items:
        raise _bad(name, f"{name} must be an object of at most {max_items} string keys and values")
    for key, item in value.items():
        if (not key or not isinstance(item, str) or len(key) > MAX_NAME or len(item) > MAX_NAME
                or any(ord(c) < 32 for c in key + item)):
            raise _bad(name, f"{name} must map non-empty keys to strings, each at most {MAX_NAME} characters")
    return dict(value)


def required_object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if not isinstance(value, dict):
        raise _bad(name, f"{name} is required: a JSON object")
    return value


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise _bad(name, f"{name} must be a whole number from {low} to {high}")
    return int(text)


def query_text(request: Request, name: str, max_length: int = MAX_NAME) -> str | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    if len(text) > max_length or any(ord(c) < 32 for c in text):
        raise _bad(name, f"{name} must be at most {max_length} printable characters")
    return text


# -- the base -----------------------------------------------------------------------------

class RoleCheckedApi:
    """People authenticated, the service layer's checks and errors out, in the OpenAI format."""

    readers: frozenset[str] = frozenset()  # roles that may read; each API names its own

    def __init__(self, db: Database, pepper: bytes, settings: Settings,
                 authenticator: Authenticator | None = None) -> None:
        self.db = db
        self.pepper = pepper
        self.settings = settings
        self.authenticator: Authenticator = authenticator or AdminKeyAuthenticator(pepper)

    def _authenticate(self, authorization: str | None) -> AdminPrincipal:
        try:
            return self.authenticator.authenticate(self.db, authorization)
        except AdminAuthError as exc:
            raise from_domain(exc) from None

    async def _principal(self, request: Request, read: bool) -> AdminPrincipal:
        principal = await asyncio.to_thread(self._authenticate, request.headers.get("authorization"))
        if read and not principal.roles & self.readers:
            raise ApiError(403, f"{principal.email} needs one of the roles {', '.join(sorted(self.readers))}",
                           "admin_forbidden")
        return principal

    async def _call(self, request: Request, work: Callable[[AdminPrincipal, dict[str, Any]], Any], read: bool = False,
                     status: int = 200, needs: str | None = None, fields: Collection[str] = (),
                     enrolment: bool = False) -> Response:
        """Authenticate, check the role (before reading a body that may be hostile), read and
        check the body, run ``work`` in a thread, and answer with a request id either way."""
        request_id = new_request_id()
        headers = {REQUEST_ID_HEADER: request_id}
        try:
            principal = await self._principal(request, read)
            if principal.enrolment and not enrolment:
                raise ApiError(403, f"admin key {principal.key_id} was issued to {principal.email} by someone else: "
                               "exchange it for your own first (`gatehouse login`, or POST /admin/admin-keys/redeem)",
                               "enrolment_key")
            if needs is not None and needs not in principal.roles:
                raise ApiError(403, f"{principal.email} needs the {needs} role", "forbidden")
            body: dict[str, Any] = {}
            empty = request.headers.get("content-length") in (None, "0") and "transfer-encoding" not in request.headers
            if request.method == "POST" and not empty:  # apply takes no body
                _, body = await read_json_body_any(request, MAX_POLICY_BYTES)
                if not isinstance(body, dict):
                    raise ApiError(400, "the body must be a JSON object", "invalid_json")
            check_fields(body, fields)
            try:
                result = await asyncio.to_thread(work, principal, body)
            except (GatehouseError, PolicyError, ValueError) as exc:
                raise from_domain(exc) from None
            except IntegrityError:  # a concurrent change made the same thing first
                raise ApiError(409, "a concurrent change conflicts with this one: try again", "conflict") from None
            except DataError:
                raise ApiError(400, "a value does not fit what the store holds (too long or out of range)",
                               "invalid_value") from None
        except ApiError as error:
            return error.response(headers)
        except (OperationalError, InterfaceError) as exc:  # the store is down or unreachable: nothing was changed
            log.error("admin request %s %s: the store is unreachable (%s, %s)", request.method, request.url.path,
                      type(exc).__name__, request_id)
            return ApiError(503, "the store is unreachable; nothing was changed: try again shortly", "store_unavailable",
                            headers={"retry-after": "5"}).response(headers)
        except Exception:
            log.exception("admin request %s %s failed (%s)", request.method, request.url.path, request_id)
            return ApiError(500, f"internal error; see the log for request {request_id}", "internal_error").response(headers)
        if isinstance(result, Response):
            result.headers[REQUEST_ID_HEADER] = request_id
            return result
        return Response(orjson.dumps(result, default=str), status_code=status, media_type="application/json",
                        headers=headers)

    async def _run(self, request: Request, work: Callable[[str, dict[str, Any]], Any], read: bool = False,
                   status: int = 200, needs: str | None = None, fields: Collection[str] = ()) -> Response:
        """``_call`` for work that needs only the actor, ``person:<email>``."""
        return await self._call(request, lambda principal, body: work(actor_of(principal), body), read=read,
                                 status=status, needs=needs, fields=fields)

    def _ref(self, request: Request) -> str:
        return str(request.path_params["ref"])

    def _path(self, request: Request, name: str) -> str:
        return str(request.path_params[name])


def actor_of(principal: AdminPrincipal) -> str:
    """The actor the service layer is told: the authenticated person, nobody else."""
    return f"person:{principal.email}"


def stamped(endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """An admin endpoint not on ``RoleCheckedApi`` (leak reports), with a request id on its answer."""

    async def handler(request: Request) -> Response:
        response: Response = await endpoint(request)
        response.headers.setdefault(REQUEST_ID_HEADER, new_request_id())
        return response

    return handler
