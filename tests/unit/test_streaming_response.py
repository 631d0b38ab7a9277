"""A stream whose client is gone before its first byte still ends its request properly."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import ClientDisconnect

from gatehouse.api.streaming import ClosingStreamingResponse


def test_on_close_runs_even_when_the_body_never_started():
    ran, closed = [], []

    async def body():  # type: ignore[no-untyped-def]
        try:
            ran.append("started")
            yield b"data: {}\n\n"
        finally:
            ran.append("finally")

    async def on_close() -> None:
        closed.append(True)

    async def receive() -> dict:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        raise OSError("the client is gone")

    response = ClosingStreamingResponse(body(), on_close, media_type="text/event-stream")
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "method": "POST", "path": "/"}
    with pytest.raises(ClientDisconnect):  # Starlette's name for the failed send
        asyncio.run(response(scope, receive, send))
    assert closed == [True]
    assert "finally" not in ran  # why on_close must finish the record itself when the relay never ran
