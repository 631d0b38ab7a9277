"""Which endpoints an engine kind serves. The router skips a deployment that does not serve the
request's endpoint (``Engine.supports``), and the policy plan models the same skip."""

from __future__ import annotations

from gatehouse.engines.base import ENDPOINTS

EMBEDDED_ENDPOINTS = ("chat/completions", "completions")  # llama.cpp here generates text; it embeds nothing


def serves(engine: str, endpoint: str) -> bool:
    """Whether a deployment of this engine kind answers ``endpoint`` (one of ``ENDPOINTS``)."""
    return endpoint in (EMBEDDED_ENDPOINTS if engine == "embedded" else ENDPOINTS)
