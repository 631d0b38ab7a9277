"""What owners are told about their identities: the events sent through the notify webhook.

Events name keys by id only, never a secret.
"""

from __future__ import annotations

from typing import Any


def leak_event(outcome: Any) -> dict[str, Any]:
    return {"event": "key.leaked", "key_id": outcome.key_id, "identity": outcome.identity,
            "owner": outcome.owner, "backup_owner": outcome.backup_owner, "source": outcome.source,
            "reported_by": outcome.reported_by, "already_revoked": outcome.already_revoked,
            "action": "the key is revoked; check its recent use, then issue a replacement"}


def orphan_event(person: str, identities: list[str]) -> dict[str, Any]:
    return {"event": "identities.orphaned", "departed": person, "identities": identities,
            "action": "these identities were suspended: assign a new owner or retire them"}
