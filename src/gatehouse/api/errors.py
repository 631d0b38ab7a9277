"""Errors in the OpenAI error shape: ``{"error": {"message", "type", "param", "code"}}``, and the
one map from the domains' errors to HTTP statuses and codes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from gatehouse.authz import Forbidden
from gatehouse.core.errors import Conflict, NotFound, Unauthenticated
from gatehouse.core.yamldoc import DocumentError
from gatehouse.identity.admin_keys import AdminAuthError
from gatehouse.policy.approvals import NotApproved
from gatehouse.policy.change_control import BreakGlassLimit, StalePlan

_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_denied_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
    415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
    499: "client_closed_request", 500: "server_error", 502: "upstream_error", 503: "service_unavailable",
    504: "upstream_timeout",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return Response(orjson.dumps(self.body()), status_code=self.status, media_type="application/json",
                        headers={**(headers or {}), **self.headers})


def from_domain(exc: Exception) -> ApiError:
    """What a caller sees for an error a service function raised. Anything not named here is
    a refused request (400), never a 500: unexpected errors do not reach this map."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AdminAuthError):
        return ApiError(exc.status, exc.message, exc.code)
    if isinstance(exc, Unauthenticated):
        return ApiError(401, str(exc), exc.code)
    if isinstance(exc, DocumentError):
        return ApiError(400, f"invalid {exc.kind}: " + "; ".join(str(p) for p in exc.problems), f"invalid_{exc.kind}",
                        "source")
    if isinstance(exc, BreakGlassLimit):
        return ApiError(429, str(exc), "break_glass_limit")
    if isinstance(exc, Forbidden):
        return ApiError(403, str(exc), "forbidden")
    if isinstance(exc, NotFound):
        return ApiError(404, str(exc), "not_found")
    if isinstance(exc, StalePlan):
        return ApiError(409, str(exc), "stale_plan", "plan_id")
    if isinstance(exc, NotApproved):
        return ApiError(409, str(exc), "not_approved")
    if isinstance(exc, Conflict):
        return ApiError(409, str(exc), "conflict")
    return ApiError(400, str(exc), "invalid_request")
