"""Streaming responses that free the engine the moment they end, and awaiting work that is
abandoned when the client disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse

from gatehouse.api.errors import ApiError

T = TypeVar("T")


class ClosingStreamingResponse(StreamingResponse):
    """Closes the body generator as soon as the response ends, however it ends.

    Starlette cancels a stream whose client went away, but can leave the generator suspended
    until garbage collection; closing it at once is what frees the engine at once.
    """

    def __init__(self, content: AsyncGenerator[bytes, None], on_close: Callable[[], Awaitable[None]],
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.generator = content
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self.generator.aclose()
            finally:
                await self.on_close()


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` in this task, cancelling it if the client disconnects first (answer 499).

    One watcher task per request and no ``asyncio.wait``: this runs on every request.
    """
    current = asyncio.current_task()
    assert current is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        await disconnected(request)
        gone = True
        current.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        result = await work
    except asyncio.CancelledError:
        if not gone:
            raise
        current.uncancel()
        raise ApiError(499, "the client closed the connection", "client_disconnected") from None
    finally:
        watcher.cancel()
    if gone:  # the work finished just as the cancel came (e.g. asyncio.wait_for swallowed it)
        current.uncancel()
        raise ApiError(499, "the client closed the connection", "client_disconnected")
    return result


async def disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
