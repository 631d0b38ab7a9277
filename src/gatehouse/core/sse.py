"""Server-sent events as the OpenAI streaming API frames them: ``data: <json>\n\n``, ending with ``[DONE]``."""

from __future__ import annotations


def sse_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
