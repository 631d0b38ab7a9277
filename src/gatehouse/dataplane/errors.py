"""Errors in the OpenAI error shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import orjson
from starlette.responses import Response

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

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return Response(orjson.dumps(self.body()), status_code=self.status, media_type="application/json",
                        headers={**(headers or {}), **self.headers})
