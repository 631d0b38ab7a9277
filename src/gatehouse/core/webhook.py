"""Telling people what needs them: a JSON POST to the configured webhook.

Delivery is best effort and never undoes the change it reports (a leaked key stays revoked
whether or not the webhook answers); the outcome is returned so the caller can say so.
The payload names keys by id only, never a secret. Every string in it is ``shown``
(``gatehouse.core.display``): receivers put it in front of people (chat, mail), and a reason,
a name or a policy's text must not carry an escape sequence or a bidirectional override there.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from gatehouse.core.display import shown_all

log = logging.getLogger("gatehouse.notify")


def notify(webhook: str | None, event: dict[str, Any], timeout: float = 5.0) -> str:
    """Returns "delivered", "not configured", or why it failed."""
    if not webhook:
        return "not configured (set GATEHOUSE_NOTIFY_WEBHOOK)"
    try:
        response = httpx.post(webhook, json=shown_all(event), timeout=timeout)
    except Exception as exc:  # a bad URL included: a notification must never undo or block the change
        log.warning("owner notification %s failed: %s", event.get("event"), type(exc).__name__)
        return f"failed: {type(exc).__name__}"
    if response.status_code >= 300:
        log.warning("owner notification %s refused: HTTP %d", event.get("event"), response.status_code)
        return f"failed: HTTP {response.status_code}"
    return "delivered"
