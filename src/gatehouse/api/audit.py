"""The audit log over the admin API (``gatehouse audit …``): its newest entries, the chain and the
signed checkpoints verified with this installation's key, a checkpoint signed now, the public
key. For the roles that answer for what happened: auditor, identity-admin, policy-admin,
approver, operator.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from gatehouse import audit as audit_log
from gatehouse.api.admin import RoleCheckedApi, query_int
from gatehouse.audit import checkpoints
from gatehouse.core.errors import GatehouseError
from gatehouse.store.models import AuditCheckpoint, AuditEntry, AuditHead

READERS = frozenset({"auditor", "identity-admin", "policy-admin", "approver", "operator"})
MAX_ENTRIES = 10_000


class AuditApi(RoleCheckedApi):
    readers = READERS

    async def log(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            limit = query_int(request, "limit", 50, 1, MAX_ENTRIES)
            with self.db.read() as session:
                rows = session.execute(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)).scalars().all()
            return {"entries": [{"seq": e.seq, "ts": e.ts, "actor": e.actor, "action": e.action, "target": e.target,
                                 "details": orjson.loads(e.details), "hash": e.hash} for e in reversed(rows)]}
        return await self._run(request, work, read=True)

    async def verify(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            cadence_from = (query_int(request, "cadence_from", 0, 1, checkpoints.MAX_SIZE - 1)
                            if "cadence_from" in request.query_params else self.settings.audit_cadence_from)
            signing = checkpoints.signing_key(self.settings)
            key = signing.public_key() if signing is not None else None
            with self.db.read() as session:
                chain = audit_log.verify(session)
                stored = checkpoints.verify_stored(session, key) if key is not None else None
                cadence = checkpoints.verify_cadence(session, self.settings.audit_checkpoint_every, chain.entries,
                                                     cadence_from)
            problems = [(chain.first_bad_seq, chain.problem)] if not chain.ok else []
            for result in (stored, cadence):
                if result is not None and not result.ok:
                    problems.append((result.first_bad_seq, result.problem))
            return {"ok": not problems, "entries": chain.entries, "head": chain.head_hash,
                    "checkpoints_verified": stored.checked if stored else None, "exported_checkpoint_ok": None,
                    "cadence": {"every": cadence.every, "from": cadence.start, "required": cadence.required,
                                "missing": list(cadence.missing), "legacy_gaps": cadence.legacy_gaps},
                    "first_bad_entry": problems[0][0] if problems else None,
                    "problems": [problem for _, problem in problems]}
        return await self._run(request, work, read=True)

    async def checkpoint(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            signing = checkpoints.ensure_signing_key(self.settings)
            with self.db.write() as session:
                checkpoints.checkpoint_now(session, signing)
                head = session.execute(select(AuditHead.seq).where(AuditHead.id == 1)).scalar_one()
                latest = session.get(AuditCheckpoint, head) if head else None
                exported = checkpoints.as_dict(latest) if latest is not None else None
                bad = (checkpoints.verify_exported(session, signing.public_key(), exported).problem
                       if exported is not None else "the chain head does not match its entry, so it was not signed")
            if head == 0:
                raise GatehouseError("the audit log is empty: nothing to sign")
            if bad is not None or exported is None:  # never hand out a checkpoint this key did not sign for this log
                raise GatehouseError(f"no valid checkpoint at the head ({head} entries): {bad}; run gatehouse audit "
                                     "verify")
            return exported
        return await self._run(request, work, read=True, status=201)

    async def public_key(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: {
            "public_key": checkpoints.public_pem(checkpoints.ensure_signing_key(self.settings).public_key())},
            read=True)
