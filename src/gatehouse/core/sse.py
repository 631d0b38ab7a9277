"""Server-sent events as the OpenAI streaming API frames them: ``data: <json>\n\n``, ending with ``[DONE]``."""

from __future__ import annotations


def sse_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def split_events(buffer: bytearray) -> list[bytes]:
    """Cut complete SSE events (ending in a blank line) off the front of ``buffer``."""
    events: list[bytes] = []
    while True:
        end = buffer.find(b"\n\n")
        crlf = buffer.find(b"\r\n\r\n")
        if crlf != -1 and (end == -1 or crlf < end):
            cut, size = crlf, 4
        elif end != -1:
            cut, size = end, 2
        else:
            return events
        events.append(bytes(buffer[:cut]).replace(b"\r\n", b"\n") + b"\n\n")
        del buffer[: cut + size]
