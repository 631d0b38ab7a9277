"""Paging a person: an Events API v2 call (PagerDuty's format, which Opsgenie, Grafana OnCall
and Alertmanager receivers also take) to ``GATEHOUSE_PAGER_URL``.

The incident id is the dedup key, so the page, its acknowledgement and its resolution are one
alert on the pager's side. The routing key is a secret: it goes in the body, never in a log.
What a person reads (the summary, the details) is ``shown`` (``gatehouse.core.display``):
names and conditions that reach a pager carry no escape sequence or hidden character.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from gatehouse.core.config import Settings
from gatehouse.core.display import shown, shown_all

log = logging.getLogger("gatehouse.pager")


def page(settings: Settings, action: str, incident: str, event: dict[str, Any], timeout: float = 5.0) -> str:
    """``action``: trigger | acknowledge | resolve. Returns "delivered", "not configured" or why not."""
    if not settings.pager_url:
        return "not configured (set GATEHOUSE_PAGER_URL)"
    body: dict[str, Any] = {"routing_key": settings.pager_routing_key or "", "event_action": action, "dedup_key": incident}
    if action == "trigger":
        summary = shown(f"Gatehouse {incident}: {event.get('threshold')} on {event.get('subject')}: {event.get('condition')}")
        body["payload"] = {"summary": summary[:1024], "source": "gatehouse", "severity": "critical",
                           "component": shown_all(event.get("scope")), "custom_details": shown_all(event)}
    try:
        response = httpx.post(settings.pager_url, json=body, timeout=timeout)
    except Exception as exc:
        log.warning("page for %s failed: %s", incident, type(exc).__name__)
        return f"failed: {type(exc).__name__}"
    if response.status_code >= 300:
        log.warning("page for %s refused: HTTP %d", incident, response.status_code)
        return f"failed: HTTP {response.status_code}"
    return "delivered"
