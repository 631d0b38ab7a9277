"""Build the engine behind each deployment of a policy.

A deployment whose credential is missing or unusable does not take the version down with
it: it is built as an :class:`UnavailableEngine`, which fails every call with the ``credential``
kind, so the router goes on to the next deployment of the route (and says so in
``x-gatehouse-fallbacks``). Its ``problem`` says why, for operators; it is logged once, when
the engine is built, and never holds the credential's value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gatehouse.core.config import Settings
from gatehouse.core.errors import GatehouseError
from gatehouse.engines.base import Engine, EngineFailure, EngineReply
from gatehouse.engines.credentials import CredentialProblem, own_files, resolve_credential
from gatehouse.engines.model_files import BUILTIN_MODEL, ensure_builtin_model
from gatehouse.engines.openai_upstream import OpenAIUpstream
from gatehouse.engines.spec import Deployment

log = logging.getLogger("gatehouse.engines")
UNAVAILABLE = "credential"  # the EngineFailure kind of a deployment whose credential cannot be used


class UnavailableEngine:
    """A deployment that cannot be used as configured. Every call fails with ``kind`` (a
    failure the router hands on to the next deployment); ``problem`` says why."""

    def __init__(self, name: str, deployment: Deployment, problem: str, kind: str = UNAVAILABLE) -> None:
        self.name = name
        self.deployment = deployment
        self.problem = problem
        self.kind = kind

    def supports(self, endpoint: str) -> bool:
        return True  # it would, with a credential: a failed attempt, not an unsupported one

    async def start(self) -> None:
        pass

    def begin_shutdown(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def call(self, endpoint: str, body: dict[str, Any], stream: bool, caller: str = "",
                   request_id: str = "") -> EngineReply:
        raise EngineFailure(self.kind, self.problem)

    async def count_tokens(self, text: str) -> int | None:
        raise EngineFailure(self.kind, self.problem)

    def __repr__(self) -> str:
        return f"UnavailableEngine({self.name!r}, {self.kind!r})"


def engine_problems(engines: Mapping[str, Engine]) -> dict[str, str]:
    """Deployment → why it cannot answer, for every engine built unavailable: what a heartbeat
    or ``policy status`` shows operators (no secret in it)."""
    return {name: engine.problem for name, engine in engines.items() if isinstance(engine, UnavailableEngine)}


def build_engine(name: str, deployment: Deployment, settings: Settings) -> Engine:
    from gatehouse.engines.embedded import EmbeddedEngine  # lazy: loads llama.cpp, which upstream-only gateways never need

    if deployment.engine != "embedded":
        try:
            api_key = resolve_credential(name, deployment.credential, settings.home, reserved=own_files(settings))
            return OpenAIUpstream(name, deployment, api_key)
        except CredentialProblem as exc:
            log.error("deployment %s is unavailable, requests go on to the next deployment of their route: %s",
                      name, exc)
            return UnavailableEngine(name, deployment, str(exc))
    if deployment.model_path:
        path = settings.home.joinpath(deployment.model_path).expanduser()
        if not path.is_file():
            raise GatehouseError(f"deployment {name!r}: model file {path} not found")
    elif deployment.model == BUILTIN_MODEL:
        path = ensure_builtin_model(settings.models_dir)
    else:
        raise GatehouseError(
            f"deployment {name!r}: set model_path to a GGUF file, or model: {BUILTIN_MODEL} for the built-in model")
    return EmbeddedEngine(name, deployment, path)


def build_engines(deployments: dict[str, Deployment], settings: Settings,
                  reuse: dict[str, tuple[Deployment, Engine]] | None = None) -> tuple[dict[str, Engine], list[Engine]]:
    """Engines for ``deployments``; an engine in ``reuse`` whose deployment is unchanged is kept
    (a grant-only change must not reload a model). Returns all engines and the new ones.

    An unavailable engine is never reused: a credential put right since is read on the next
    version's load."""
    engines: dict[str, Engine] = {}
    created: list[Engine] = []
    for name, deployment in deployments.items():
        kept = (reuse or {}).get(name)
        if kept is not None and kept[0] == deployment and not isinstance(kept[1], UnavailableEngine):
            engines[name] = kept[1]
        else:
            engines[name] = build_engine(name, deployment, settings)
            created.append(engines[name])
    return engines, created
