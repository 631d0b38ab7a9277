"""Local prompt-injection classifiers, loaded from ``$GATEHOUSE_HOME/classifiers/``.

A classifier is a Python file that defines ``score(text: str) -> float`` (0: benign, 1: an
attack) — wrapping whatever model the operator installed (a scikit-learn pipeline, an ONNX
model, a small llama.cpp model). A policy names one by file name only: the files are placed on
the gateway host by whoever runs it, so a policy change can choose among installed classifiers
but cannot make the gateway run code from anywhere else. A profile that names none gets the
built-in model (``injection_model``), shipped in the package.

Each classifier has a ``digest`` (sha256 of its file, 16 hex digits): what a verdict or a
policy version records to say which model judged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from gatehouse.core.errors import GatehouseError
from gatehouse.guardrails.injection_model import default_model

log = logging.getLogger("gatehouse.guardrails")
NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.py$"
_loaded: dict[tuple[Path, str], Callable[[str], float]] = {}  # by path and content digest


class _Checked:
    """A classifier that cannot fail a request: an error scores 0 (logged by type), a score is
    clamped to 0..1, and calls are one at a time (large bodies are scanned in threads, and a
    model object is rarely safe to call from two at once)."""

    def __init__(self, name: str, score: Callable[[str], float], digest: str) -> None:
        self.name = name
        self.digest = digest  # of the file, as loaded
        self._score = score
        self._lock = threading.Lock()

    def __call__(self, text: str) -> float:
        try:
            with self._lock:
                value = float(self._score(text))
        except Exception as exc:
            log.error("injection classifier %s failed: %s", self.name, type(exc).__name__)
            return 0.0
        return min(max(value, 0.0), 1.0) if value == value else 0.0  # NaN scores nothing


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_classifier(directory: Path, name: str) -> Callable[[str], float]:
    if not re.match(NAME, name):
        raise GatehouseError(f"injection classifier {name!r}: a file name ending in .py")
    path = (directory / name).resolve()
    if not path.is_file():
        raise GatehouseError(f"injection classifier {name!r} is not installed in {directory}")
    digest = file_digest(path)
    key = (path, digest)  # by content: a file replaced with its modification time kept is still new
    if key in _loaded:
        return _loaded[key]
    module_name = f"gatehouse_classifier_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise GatehouseError(f"injection classifier {name!r} cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # pickled models and dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise GatehouseError(f"injection classifier {name!r} failed to load: {type(exc).__name__}: {exc}") from None
    score = getattr(module, "score", None)
    if not callable(score):
        raise GatehouseError(f"injection classifier {name!r} defines no score(text) function")
    _loaded[key] = _Checked(name, score, digest)
    return _loaded[key]


def classifier_problem(home: Path, name: str) -> str | None:
    """Why a policy naming this classifier could not be enforced on this host, or None."""
    if not (home / "classifiers" / name).is_file():
        return f"injection classifier {name!r} is not installed in {home / 'classifiers'} (install it on every gateway host first)"
    return None


def classifier_digest(classifier: Callable[[str], float] | None) -> str:
    """Which model judges for a profile: the digest of its loaded classifier, or of the
    built-in model when it names none (``EffectiveProfile.classifier`` is None)."""
    if classifier is None:
        return default_model().digest
    return str(getattr(classifier, "digest", "unknown"))


def installed_digest(home: Path, name: str | None) -> str | None:
    """The digest a policy naming this classifier (None: the built-in) would run with on this
    host, or None when it is not installed: for recording in a policy version."""
    if name is None:
        return default_model().digest
    path = home / "classifiers" / name
    if not re.match(NAME, name) or not path.is_file():
        return None
    return file_digest(path)
