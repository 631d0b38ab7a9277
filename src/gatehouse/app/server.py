"""The HTTP server's own limits: how long a client may take to send a request's headers, and
then its body.

uvicorn closes idle keep-alive connections but bounds neither: a client sending one byte a
second holds a connection (and, for a body, the request's task) for as long as it likes. This
protocol, uvicorn's httptools one with two timers, answers 408 in the API's error shape and
closes the connection when either runs out. The header timer runs from the connection's start
(and from each new request's first byte) until the headers are complete; the body timer from
then until the body is complete, whether it has a Content-Length or comes chunked. A request
pipelined behind another is not read until that one is answered, so its body timer runs from
then. A kept-alive connection's next request that times out on its headers gets its 408 too.

Timeouts come from ``GATEHOUSE_HEADER_TIMEOUT`` and ``GATEHOUSE_BODY_TIMEOUT`` (seconds, read
when a worker starts; workers are separate processes, so they are read there, not passed).
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gatehouse.api.validation import TIMED_OUT

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0


def seconds(name: str, default: float) -> float:
    """A positive, finite number of seconds (at most a day) from the environment, else ``default``."""
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if math.isfinite(value) and 0 < value <= 86400 else default


@functools.cache
def read_limits() -> tuple[float, float]:
    """The header and body timeouts, read once in each worker process (not per connection)."""
    return (seconds("GATEHOUSE_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT),
            seconds("GATEHOUSE_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT))


def timeout_response(what: str, limit: float) -> bytes:
    """A complete HTTP/1.1 408 in the API's error shape, closing the connection."""
    return closing_error(b"408 Request Timeout", f"the request's {what} did not arrive within {limit:g} s",
                         "request_timeout")


def closing_error(status: bytes, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 error response in the API's error shape, closing the connection."""
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class TimedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read timeouts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout, self.body_timeout = read_limits()
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, what: str, limit: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(limit, self._expired, what, limit)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, what: str, limit: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if what == "body" and self.pipeline:  # queued behind another request: the server stopped reading it,
            return                            # not the client; timed again when it starts (on_response_complete)
        cycle = self.cycle  # while headers are awaited, the previous request's on a kept-alive connection
        idle = cycle is None or (cycle.response_complete if what == "headers" else not cycle.response_started)
        if idle:  # no response under way: the caller is told why
            self.transport.write(timeout_response(what, limit))
        if cycle is not None and not cycle.response_complete:
            if what == "body":  # the application's record says why the body stopped: the timer, not the client
                cycle.scope.setdefault("extensions", {})[TIMED_OUT] = {"seconds": limit}
            cycle.disconnected = True  # the application's receive() sees the client gone
            cycle.message_event.set()
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn's signature
        super().connection_made(transport)
        self._arm("headers", self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a further request on a kept-alive connection
            self._arm("headers", self.header_timeout)

    def on_headers_complete(self) -> None:
        self._arm("body", self.body_timeout)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts a pipelined request queued behind this one
        cycle = self.cycle
        if self._deadline is None and cycle is not None and cycle.more_body and not self.transport.is_closing():
            self._arm("body", self.body_timeout)  # its body is read from now on

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP/1.1 (two Content-Lengths, Content-Length with
        chunked, a bad header), in the API's error shape instead of plain text."""
        self._disarm()
        self.transport.write(closing_error(b"400 Bad Request", "the request is not well-formed HTTP/1.1 "
                                           "(its request line, headers or framing)", "invalid_http"))
        self.transport.close()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the connection is another protocol's from here
        super().handle_websocket_upgrade()
