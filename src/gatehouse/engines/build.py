"""Build the engine behind each deployment of a policy."""

from __future__ import annotations

from gatehouse.core.config import Settings
from gatehouse.core.errors import GatehouseError
from gatehouse.engines.base import Engine
from gatehouse.engines.credentials import resolve_credential
from gatehouse.engines.model_files import BUILTIN_MODEL, ensure_builtin_model
from gatehouse.engines.openai_upstream import OpenAIUpstream
from gatehouse.engines.spec import Deployment


def build_engine(name: str, deployment: Deployment, settings: Settings) -> Engine:
    from gatehouse.engines.embedded import EmbeddedEngine  # lazy: loads llama.cpp, which upstream-only gateways never need

    if deployment.engine != "embedded":
        return OpenAIUpstream(name, deployment, resolve_credential(name, deployment.credential, settings.home))
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
    (a grant-only change must not reload a model). Returns all engines and the new ones."""
    engines: dict[str, Engine] = {}
    created: list[Engine] = []
    for name, deployment in deployments.items():
        kept = (reuse or {}).get(name)
        if kept is not None and kept[0] == deployment:
            engines[name] = kept[1]
        else:
            engines[name] = build_engine(name, deployment, settings)
            created.append(engines[name])
    return engines, created
