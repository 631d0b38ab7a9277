"""Incidents over the admin API: the same service functions as ``gatehouse incident``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import MAX_TEXT, RoleCheckedApi, optional_text, query_text, required_text
from gatehouse.monitoring import incidents
from gatehouse.monitoring.evaluate import evaluate
from gatehouse.policy import versions


class IncidentAdminApi(RoleCheckedApi):
    readers = frozenset({"operator", "auditor", "identity-admin"})

    async def list(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            return {"incidents": incidents.list_incidents(self.db, query_text(request, "status", 32))}
        return await self._run(request, work, read=True)

    async def show(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: incidents.get_incident(self.db, self._ref(request)),
                               read=True)

    async def acknowledge(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: incidents.acknowledge(
            self.db, actor, self._ref(request), optional_text(body, "note", MAX_TEXT), self.settings), needs="operator",
            fields=("note",))

    async def close(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: incidents.close(
            self.db, actor, self._ref(request), required_text(body, "note", MAX_TEXT), self.settings), needs="operator",
            fields=("note",))

    async def check(self, request: Request) -> Response:
        """Evaluate the active policy's thresholds now (the gateway does it every few seconds)."""
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            active = versions.active_policy(self.db)
            if active is None:
                return {"opened": [], "thresholds": 0, "policy_version": None,
                        "note": "no active policy: nothing to check"}
            loaded, _ = active
            thresholds = loaded.document.monitoring.thresholds
            opened = evaluate(self.db, thresholds, loaded.version, self.settings)
            return {"opened": opened or [], "thresholds": len(thresholds), "policy_version": loaded.version}
        return await self._run(request, work, needs="operator")
