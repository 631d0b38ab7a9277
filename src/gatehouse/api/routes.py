"""The HTTP surface: every route, the error handlers that keep every failure in the API's
error shape, and the hot-path dispatcher for the inference endpoints.

The admin routes are one table (``admin_routes``), served by the full gateway (``build_app``)
and by the control plane alone (``gatehouse.app.control``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gatehouse.api.admin import REQUEST_ID_HEADER, Authenticator, new_request_id, stamped
from gatehouse.api.audit import AuditApi
from gatehouse.api.errors import ApiError
from gatehouse.api.health import Health
from gatehouse.api.identities import IdentityApi
from gatehouse.api.incidents import IncidentAdminApi
from gatehouse.api.inference import Gateway
from gatehouse.api.inventory import InventoryApi
from gatehouse.api.keys import KeyApi
from gatehouse.api.leaks import LeakReports, load_github_keys
from gatehouse.api.metrics import MetricsEndpoint
from gatehouse.api.people import PeopleApi
from gatehouse.api.policy import PolicyAdminApi
from gatehouse.api.reviews import ReviewApi
from gatehouse.core.config import Settings
from gatehouse.store.db import Database

log = logging.getLogger("gatehouse")


def _ids() -> dict[str, str]:
    return {REQUEST_ID_HEADER: new_request_id()}


async def _not_found(request: Request, exc: Exception) -> Response:
    return ApiError(404, f"no route {request.method} {request.url.path}", "not_found").response(_ids())


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return ApiError(405, f"method {request.method} is not allowed on {request.url.path}",
                    "method_not_allowed").response(_ids())


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return ApiError(500, "internal error; see the gateway log", "internal_error").response(_ids())


def error_handlers() -> dict[Any, Callable[[Request, Exception], Any]]:
    """What keeps a route that is not there, a wrong method or a crash in the error shape."""
    return {404: _not_found, 405: _method_not_allowed, 500: _server_error}


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


@dataclass(frozen=True)
class AdminApis:
    """Every admin endpoint's handler, built once per worker."""

    people: PeopleApi
    identities: IdentityApi
    keys: KeyApi
    reviews: ReviewApi
    audit: AuditApi
    inventory: InventoryApi
    policy: PolicyAdminApi
    incidents: IncidentAdminApi
    leaks: LeakReports

    @classmethod
    def build(cls, db: Database, settings: Settings, pepper: bytes,
              authenticator: Authenticator | None = None) -> AdminApis:
        """Leak reports from GitHub are checked against ``GATEHOUSE_GITHUB_SCANNING_KEYS``."""
        parts = (db, pepper, settings, authenticator)
        return cls(PeopleApi(*parts), IdentityApi(*parts), KeyApi(*parts), ReviewApi(*parts), AuditApi(*parts),
                   InventoryApi(*parts), PolicyAdminApi(*parts), IncidentAdminApi(*parts),
                   LeakReports(db, settings, pepper, load_github_keys(os.environ.get("GATEHOUSE_GITHUB_SCANNING_KEYS"))))


def admin_routes(apis: AdminApis) -> list[BaseRoute]:
    """The control-plane API: every ``/admin`` route, in one table."""
    people, identities, keys, reviews, audit = apis.people, apis.identities, apis.keys, apis.reviews, apis.audit
    inventory, policy, incidents = apis.inventory, apis.policy, apis.incidents
    post, delete = ["POST"], ["DELETE"]
    return [
        # people, roles, admin keys
        Route("/admin/whoami", people.whoami),
        Route("/admin/people", people.people),
        Route("/admin/people", people.add, methods=post),
        Route("/admin/people/{email}", people.show),
        Route("/admin/people/{email}/depart", people.depart, methods=post),
        Route("/admin/roles", people.roles),
        Route("/admin/people/{email}/roles", people.grant_role, methods=post),
        Route("/admin/people/{email}/roles/{role}", people.revoke_role, methods=delete),
        Route("/admin/people/{email}/admin-keys", people.issue_admin_key, methods=post),
        Route("/admin/admin-keys/redeem", people.redeem_admin_key, methods=post),
        Route("/admin/admin-keys/{key_id}", people.revoke_admin_key, methods=delete),
        # identities
        Route("/admin/identities", identities.identities),
        Route("/admin/identities", identities.create, methods=post),
        Route("/admin/identities/{name}", identities.show),
        Route("/admin/identities/{name}/suspend", identities.suspend, methods=post),
        Route("/admin/identities/{name}/resume", identities.resume, methods=post),
        Route("/admin/identities/{name}/retire", identities.retire, methods=post),
        Route("/admin/identities/{name}/approve", identities.approve, methods=post),
        Route("/admin/identities/{name}/reject", identities.reject, methods=post),
        Route("/admin/identities/{name}/clearance", identities.clearance, methods=post),
        Route("/admin/identities/{name}/attended", identities.attended, methods=post),
        Route("/admin/identities/{name}/transfer/plan", identities.plan_transfer, methods=post),
        Route("/admin/identities/{name}/transfer", identities.transfer, methods=post),
        # keys
        Route("/admin/keys", keys.keys),
        Route("/admin/identities/{name}/keys", keys.issue, methods=post),
        Route("/admin/keys/leaked", keys.leaked, methods=post),
        Route("/admin/keys/{key_id}/revoke", keys.revoke, methods=post),
        Route("/admin/keys/{key_id}/rotate", keys.rotate, methods=post),
        Route("/admin/leaks", stamped(apis.leaks.post), methods=post),
        # reviews
        Route("/admin/reviews", reviews.reviews),
        Route("/admin/reviews", reviews.start, methods=post),
        Route("/admin/reviews/enforce", reviews.enforce, methods=post),
        Route("/admin/identities/{name}/attest", reviews.attest, methods=post),
        # oversight
        Route("/admin/inventory", inventory.inventory),
        Route("/admin/findings", inventory.findings),
        Route("/admin/credential-report", inventory.credential_report),
        # audit
        Route("/admin/audit", audit.log),
        Route("/admin/audit/verify", audit.verify),
        Route("/admin/audit/checkpoint", audit.checkpoint, methods=post),
        Route("/admin/audit/public-key", audit.public_key),
        # policy
        Route("/admin/policy/status", policy.status),
        Route("/admin/policy/plan", policy.plan_source, methods=post),
        Route("/admin/policy/versions", policy.versions),
        Route("/admin/policy/versions", policy.propose, methods=post),
        Route("/admin/policy/versions/{ref}", policy.version),
        Route("/admin/policy/versions/{ref}/plan", policy.plan),
        Route("/admin/policy/versions/{ref}/approve", policy.approve, methods=post),
        Route("/admin/policy/versions/{ref}/reject", policy.reject, methods=post),
        Route("/admin/policy/versions/{ref}/apply", policy.apply, methods=post),
        Route("/admin/policy/rollback", policy.rollback, methods=post),
        Route("/admin/policy/break-glass", policy.break_glass, methods=post),
        Route("/admin/policy/break-glass/{seq}/review", policy.review_break_glass, methods=post),
        # incidents
        Route("/admin/incidents", incidents.list),
        Route("/admin/incidents/check", incidents.check, methods=post),
        Route("/admin/incidents/{ref}", incidents.show),
        Route("/admin/incidents/{ref}/acknowledge", incidents.acknowledge, methods=post),
        Route("/admin/incidents/{ref}/close", incidents.close, methods=post),
    ]


def build_app(gateway: Gateway, health: Health, admin: AdminApis,
              lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]],
              settings: Settings | None = None) -> HotPath:
    """``settings`` decide who may scrape ``/metrics``; without them, the app's
    (``app.state.settings``) when the scrape comes."""
    routes: list[BaseRoute] = [
        Route("/healthz", health.health),
        Route("/metrics", MetricsEndpoint(settings).metrics),
        Route("/v1/models", gateway.list_models),
        Route("/v1/models/{model:path}", gateway.get_model),
        Route("/v1/chat/completions", gateway.chat_completions, methods=["POST"]),
        Route("/v1/completions", gateway.completions, methods=["POST"]),
        Route("/v1/embeddings", gateway.embeddings, methods=["POST"]),
        *admin_routes(admin),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=error_handlers())
    app.state.gateway = gateway
    return HotPath(app, {"/v1/chat/completions": gateway.chat_completions, "/v1/completions": gateway.completions,
                         "/v1/embeddings": gateway.embeddings})
