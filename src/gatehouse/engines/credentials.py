"""Resolve the secret Gatehouse presents to an upstream from its reference (env var or file).

The secret is read when the engine starts and lives only in memory; the database and the
policy hold the reference, never the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from gatehouse.errors import GatehouseError
from gatehouse.policy.schema import CredentialRef


def resolve_credential(deployment_name: str, ref: CredentialRef | None) -> str | None:
    if ref is None:
        return None
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
