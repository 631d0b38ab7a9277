"""Helpers for engine tests: an embedded engine on the built-in model."""

from __future__ import annotations

from pathlib import Path

from gatehouse.engines.embedded import EmbeddedEngine
from gatehouse.engines.spec import Deployment


def make_engine(model_dir: Path, **settings) -> EmbeddedEngine:
    from gatehouse.engines.model_files import builtin_model_path

    deployment = Deployment(engine="embedded", model="gemma-3-270m", settings={"context_size": 1024, **settings})
    return EmbeddedEngine("test-embedded", deployment, builtin_model_path(model_dir))
