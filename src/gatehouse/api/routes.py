"""The HTTP surface: every route, the error handlers that keep every failure in the API's
error shape, and the hot-path dispatcher for the inference endpoints."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gatehouse.api.errors import ApiError
from gatehouse.api.health import Health
from gatehouse.api.incidents import IncidentAdminApi
from gatehouse.api.inference import Gateway
from gatehouse.api.inventory import InventoryApi
from gatehouse.api.leaks import LeakReports
from gatehouse.api.policy import PolicyAdminApi

log = logging.getLogger("gatehouse")


async def _not_found(request: Request, exc: Exception) -> Response:
    return ApiError(404, f"no route {request.method} {request.url.path}", "not_found").response()


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return ApiError(405, f"method {request.method} is not allowed on {request.url.path}", "method_not_allowed").response()


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return ApiError(500, "internal error; see the gateway log", "internal_error").response()


class HotPath:
    """Sends POSTs to the inference endpoints straight to their handlers, past Starlette's
    middleware stack and router; everything else (and the lifespan) goes to ``app``.

    Those layers cost about a tenth of a worker's CPU at thousands of requests per second
    (ADR 0007); the handlers already turn every expected failure into an OpenAI error.
    """

    def __init__(self, app: Starlette, handlers: dict[str, Any]) -> None:
        self.app = app
        self.handlers = handlers
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except Exception:
            response = await _server_error(request, Exception())
        await response(scope, receive, send)


def build_app(gateway: Gateway, health: Health, inventory: InventoryApi, policy: PolicyAdminApi,
              incidents: IncidentAdminApi, leaks: LeakReports,
              lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]]) -> HotPath:
    routes = [
        Route("/healthz", health.health),
        Route("/metrics", health.metrics),
        Route("/v1/models", gateway.list_models),
        Route("/v1/models/{model:path}", gateway.get_model),
        Route("/v1/chat/completions", gateway.chat_completions, methods=["POST"]),
        Route("/v1/completions", gateway.completions, methods=["POST"]),
        Route("/v1/embeddings", gateway.embeddings, methods=["POST"]),
        Route("/admin/leaks", leaks.post, methods=["POST"]),
        Route("/admin/inventory", inventory.inventory),
        Route("/admin/findings", inventory.findings),
        Route("/admin/credential-report", inventory.credential_report),
        Route("/admin/policy/status", policy.status),
        Route("/admin/policy/versions", policy.versions),
        Route("/admin/policy/versions", policy.propose, methods=["POST"]),
        Route("/admin/policy/versions/{ref}", policy.version),
        Route("/admin/policy/versions/{ref}/plan", policy.plan),
        Route("/admin/policy/versions/{ref}/approve", policy.approve, methods=["POST"]),
        Route("/admin/policy/versions/{ref}/reject", policy.reject, methods=["POST"]),
        Route("/admin/policy/versions/{ref}/apply", policy.apply, methods=["POST"]),
        Route("/admin/policy/rollback", policy.rollback, methods=["POST"]),
        Route("/admin/policy/break-glass", policy.break_glass, methods=["POST"]),
        Route("/admin/incidents", incidents.list),
        Route("/admin/incidents/{ref}", incidents.show),
        Route("/admin/incidents/{ref}/acknowledge", incidents.acknowledge, methods=["POST"]),
        Route("/admin/incidents/{ref}/close", incidents.close, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: _not_found, 405: _method_not_allowed, 500: _server_error})
    app.state.gateway = gateway
    return HotPath(app, {"/v1/chat/completions": gateway.chat_completions, "/v1/completions": gateway.completions,
                         "/v1/embeddings": gateway.embeddings})
