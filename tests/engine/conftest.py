"""Engine tests run the real embedded model, in process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gatehouse.engines.embedded import EmbeddedEngine

from engine_support import make_engine


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def engine(shared_models_dir, loop) -> Iterator[EmbeddedEngine]:
    engine = make_engine(shared_models_dir, slots=4, max_waiting=8)
    loop.run_until_complete(engine.start())
    yield engine
    loop.run_until_complete(engine.close())
