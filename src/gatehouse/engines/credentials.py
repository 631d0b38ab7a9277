"""Resolve the secret Gatehouse presents to an upstream from its reference (env var or file).

The secret is read when the engine starts and lives only in memory; the database and the
policy hold the reference, never the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from gatehouse.core.errors import GatehouseError
from gatehouse.engines.spec import CredentialRef


def credential_problem(ref: CredentialRef | None, home: Path | None = None) -> str | None:
    """Why this reference must not be used: Gatehouse's own secrets (its GATEHOUSE_* settings,
    the files in its home directory such as the pepper and the audit signing key) are never
    sent to an upstream. Files under ``$GATEHOUSE_HOME/credentials/`` are allowed."""
    if ref is None:
        return None
    if ref.env is not None and ref.env.upper().startswith("GATEHOUSE_"):
        return f"a credential cannot come from {ref.env}: GATEHOUSE_* variables are Gatehouse's own settings"
    if ref.file is not None and home is not None:
        path, own = Path(ref.file).expanduser().resolve(), home.expanduser().resolve()
        if path.is_relative_to(own) and not path.is_relative_to(own / "credentials"):
            return f"a credential cannot be read from {path}: files in {own} are Gatehouse's own (use {own}/credentials/)"
    return None


def resolve_credential(deployment_name: str, ref: CredentialRef | None, home: Path | None = None) -> str | None:
    if ref is None:
        return None
    problem = credential_problem(ref, home)
    if problem:
        raise GatehouseError(f"deployment {deployment_name!r}: {problem}")
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if not value:
            raise GatehouseError(
                f"deployment {deployment_name!r}: environment variable {ref.env} (its credential) is not set"
            )
        return value.strip()
    path = Path(ref.file or "").expanduser()
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise GatehouseError(
            f"deployment {deployment_name!r}: cannot read its credential file {path}: {exc.strerror}"
        ) from None
    if not value:
        raise GatehouseError(f"deployment {deployment_name!r}: credential file {path} is empty")
    return value
