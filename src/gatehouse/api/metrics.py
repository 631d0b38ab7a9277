"""``GET /metrics``, behind a scrape credential.

The samples name identities (or their teams) with their request, error and guardrail-block
counts, so they are not for whoever reaches the API port. A scraper sends
``Authorization: Bearer <GATEHOUSE_METRICS_TOKEN>`` (Prometheus: ``authorization:
credentials_file:``); the token is compared in constant time. Without a token configured,
``/metrics`` is open only on a ``dev`` installation (``GATEHOUSE_ENVIRONMENT=dev``) and
refused (403) everywhere else.
"""

from __future__ import annotations

import asyncio
import hmac

from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import REQUEST_ID_HEADER, new_request_id
from gatehouse.api.errors import ApiError
from gatehouse.core.config import Settings
from gatehouse.telemetry import exposition

CHALLENGE = 'Bearer realm="gatehouse-metrics"'


def scrape_refusal(settings: Settings | None, authorization: str | None) -> ApiError | None:
    """Why a scrape with this ``Authorization`` header is refused, or None when it may read."""
    expected = (settings.metrics_token or "").strip() if settings is not None else ""
    if not expected:
        if settings is not None and settings.dev:
            return None
        return ApiError(403, "/metrics needs a scrape credential outside a dev installation: set "
                             "GATEHOUSE_METRICS_TOKEN on the gateway and have the scraper send it as "
                             "'Authorization: Bearer …' (Prometheus: authorization.credentials_file)",
                        "metrics_token_not_set")
    scheme, _, token = (authorization or "").partition(" ")
    if not token.strip() or scheme.lower() != "bearer":
        return ApiError(401, "send the metrics scrape token as 'Authorization: Bearer …' (GATEHOUSE_METRICS_TOKEN)",
                        "metrics_unauthenticated", headers={"www-authenticate": CHALLENGE})
    if not hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape")):
        return ApiError(401, "the metrics scrape token is not GATEHOUSE_METRICS_TOKEN", "metrics_unauthenticated",
                        headers={"www-authenticate": f'{CHALLENGE}, error="invalid_token"'})
    return None


class MetricsEndpoint:
    """Serves the registry to an authorised scraper. ``settings`` default to the app's
    (``app.state.settings``), read when the scrape comes; none at all refuses."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    async def metrics(self, request: Request) -> Response:
        settings = self.settings or getattr(request.app.state, "settings", None)
        refusal = scrape_refusal(settings, request.headers.get("authorization"))
        if refusal is not None:
            return refusal.response({REQUEST_ID_HEADER: new_request_id()})
        return Response(await asyncio.to_thread(exposition.render), media_type=exposition.CONTENT_TYPE)
