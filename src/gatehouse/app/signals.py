"""Telling engines of a shutdown as soon as it starts."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from gatehouse.engines.base import Engine


def announce_shutdown_to(engines: Callable[[], Iterable[Engine]]) -> Callable[[], None]:
    """Chain onto the server's SIGTERM/SIGINT handlers so engines hear of a shutdown when it
    starts: uvicorn first waits for open requests, and requests queued in an engine should be
    answered 503 at once rather than be served or cut off later. Returns a function that restores
    the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: Any) -> None:
        for engine in engines():
            engine.begin_shutdown()
        chained = previous[signal.Signals(signum)]
        if callable(chained):
            chained(signum, frame)
        else:  # no server handler: behave as the signal would have without us
            signal.signal(signum, chained if chained is not None else signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
