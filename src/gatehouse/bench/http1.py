"""A lean HTTP/1.1 client for the load generator.

General-purpose clients spend 100-250 µs of Python per request; at thousands of requests
per second on a 2-core machine that steals the CPU the system under test needs, and the
generator, not the target, becomes what is measured. This one does only what a benchmark
needs: keep-alive connections, a pre-built request head, Content-Length and chunked
bodies, and a callback with each piece of body as it arrives, for token timing.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit


class HttpError(Exception):
    """The exchange failed at the transport level (no HTTP status to report)."""


@dataclass(slots=True)
class Head:
    status: int
    headers: dict[str, str]


class ResponseParser:
    """Incremental HTTP/1.1 response parser: feed it bytes however they were split."""

    __slots__ = ("keep", "on_head", "on_body", "head", "buffer", "mode", "remaining", "complete", "keep_alive")

    def __init__(self, keep: set[str], on_head: Callable[[Head], None], on_body: Callable[[bytes], None]) -> None:
        self.keep = keep
        self.on_head = on_head
        self.on_body = on_body
        self.head: Head | None = None
        self.buffer = bytearray()
        self.mode = "head"        # head → length | chunk-size | chunk-data | trailers | close → done
        self.remaining = 0
        self.complete = False
        self.keep_alive = True

    def feed(self, data: bytes) -> None:
        if self.mode == "length" and not self.buffer:
            self._length(data)
            return
        self.buffer += data
        while self.buffer and not self.complete and self._step():
            pass

    def _length(self, data: bytes) -> None:
        piece = data[: self.remaining]
        self.remaining -= len(piece)
        if piece:
            self.on_body(bytes(piece))
        if self.remaining == 0:
            self.complete = True

    def _step(self) -> bool:
        """Consume what the buffer allows in the current mode; False when more bytes are needed."""
        if self.mode == "head":
            end = self.buffer.find(b"\r\n\r\n")
            if end == -1:
                if len(self.buffer) > 1 << 20:
                    raise HttpError("response head over 1 MiB")
                return False
            head = _parse_head(bytes(self.buffer[: end + 4]), self.keep)
            del self.buffer[: end + 4]
            if 100 <= head.status < 200:
                return True  # an interim response (100 Continue, 103 Early Hints): the real one follows
            self.head = head
            headers = head.headers
            self.keep_alive = headers.get("connection", "").lower() != "close"
            self.on_head(head)
            if head.status in (204, 304):
                self.complete = True  # never a body, whatever the headers say
            elif "content-length" in headers:
                try:
                    self.remaining = int(headers["content-length"])
                except ValueError:
                    raise HttpError("invalid Content-Length") from None
                self.mode = "length"
                if self.remaining == 0:
                    self.complete = True
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                self.mode = "chunk-size"
            else:
                self.mode, self.keep_alive = "close", False
            return True
        if self.mode == "length":
            data = bytes(self.buffer)
            self.buffer.clear()
            self._length(data)
            return False
        if self.mode == "chunk-size":
            end = self.buffer.find(b"\r\n")
            if end == -1:
                return False
            try:
                self.remaining = int(bytes(self.buffer[:end]).split(b";", 1)[0], 16)
            except ValueError:
                raise HttpError("invalid chunk size") from None
            del self.buffer[: end + 2]
            self.mode = "chunk-data" if self.remaining else "trailers"
            return True
        if self.mode == "chunk-data":
            if len(self.buffer) < self.remaining + 2:
                return False
            self.on_body(bytes(self.buffer[: self.remaining]))
            del self.buffer[: self.remaining + 2]
            self.mode = "chunk-size"
            return True
        if self.mode == "trailers":
            end = self.buffer.find(b"\r\n")
            if end == -1:
                return False
            del self.buffer[: end + 2]
            if end == 0:
                self.complete = True
            return True
        data = bytes(self.buffer)  # "close": the body runs to the end of the connection
        self.buffer.clear()
        self.on_body(data)
        return False

    def connection_closed(self) -> bool:
        """True when the closed connection ended the response properly."""
        if self.mode == "close":
            self.complete = True
        return self.complete


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.got_bytes = False
        self.used = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # create_connection over TCP always hands a protocol a stream (read/write) transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser, waiter = self.parser, self.waiter
        if parser is None or waiter is None or waiter.done():
            self.closed = True  # bytes nobody asked for: this connection cannot be trusted again
            self.close()
            return
        self.got_bytes = True
        try:
            parser.feed(data)
        except HttpError as exc:
            waiter.set_exception(exc)
            return
        except Exception as exc:  # an on_head/on_body callback failed
            waiter.set_exception(HttpError(f"reading the response: {type(exc).__name__}: {exc}"))
            return
        if parser.complete:
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser, waiter = self.parser, self.waiter
        if waiter is None or waiter.done():
            return
        if not self.got_bytes:
            waiter.set_exception(_StaleConnection())
        elif parser is not None and parser.connection_closed():
            waiter.set_result(None)
        else:
            waiter.set_exception(HttpError("connection closed mid-response"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _StaleConnection(Exception):
    pass


class Http1Client:
    def __init__(self, base_url: str, max_connections: int = 1024, keep_headers: tuple[str, ...] = ()) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        host_header = parts.netloc.rsplit("@", 1)[-1]
        self._host_line = f"Host: {host_header}\r\n".encode()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._keep = set(keep_headers) | {"content-length", "transfer-encoding", "connection"}

    def head_bytes(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        """The request line and headers, built once per distinct request shape."""
        lines = [f"{method} {self.prefix}{path} HTTP/1.1\r\n".encode(), self._host_line]
        lines += [f"{name}: {value}\r\n".encode() for name, value in headers.items()]
        return b"".join(lines)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(_Connection, self.host, self.port, ssl=self._ssl)
        except OSError as exc:
            raise HttpError(f"connect: {exc.strerror or type(exc).__name__}") from None
        return connection

    async def exchange(self, head: bytes, body: bytes, on_head: Callable[[Head], None],
                       on_body: Callable[[bytes], None]) -> Head:
        """Send one request; ``on_head`` and ``on_body`` are called as the response arrives."""
        async with self._slots:
            connection = None
            while self._idle and connection is None:
                candidate = self._idle.pop()
                connection = None if candidate.closed else candidate
            if connection is None:
                connection = await self._connect()
            try:
                parser = await self._once(connection, head, body, on_head, on_body)
            except _StaleConnection:
                connection.close()
                if not connection.used:
                    raise HttpError("connection closed before a response") from None
                # The server had closed an idle keep-alive connection: one more try on a new one.
                connection = await self._connect()
                try:
                    parser = await self._once(connection, head, body, on_head, on_body)
                except BaseException as exc:
                    connection.close()
                    if isinstance(exc, _StaleConnection):
                        raise HttpError("connection closed before a response") from None
                    raise
            except BaseException:
                connection.close()
                raise
            finally:
                connection.parser = connection.waiter = None
            if parser.keep_alive and not connection.closed:
                connection.used = True
                self._idle.append(connection)
            else:
                connection.close()
            assert parser.head is not None
            return parser.head

    async def _once(self, connection: _Connection, head: bytes, body: bytes, on_head: Callable[[Head], None],
                    on_body: Callable[[bytes], None]) -> ResponseParser:
        if connection.closed or connection.transport is None:
            raise _StaleConnection
        parser = ResponseParser(self._keep, on_head, on_body)
        connection.parser = parser
        connection.got_bytes = False
        connection.waiter = asyncio.get_running_loop().create_future()
        connection.transport.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await connection.waiter
        return parser

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


def _parse_head(raw: bytes, keep: set[str]) -> Head:
    lines = raw.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise HttpError(f"not an HTTP response: {lines[0][:60]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            name = name.strip().lower()
            if name in keep:
                headers[name] = value.strip()
    return Head(status, headers)
