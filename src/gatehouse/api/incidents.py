"""Incidents over the admin API: the same service functions as ``gatehouse incident``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import RoleCheckedApi, optional_text, required_text
from gatehouse.monitoring import incidents


class IncidentAdminApi(RoleCheckedApi):
    readers = frozenset({"operator", "auditor", "identity-admin"})

    async def list(self, request: Request) -> Response:
        status = request.query_params.get("status")
        return await self._run(request, lambda actor, body: {"incidents": incidents.list_incidents(self.db, status)},
                               read=True)

    async def show(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: incidents.get_incident(self.db, self._ref(request)),
                               read=True)

    async def acknowledge(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: incidents.acknowledge(
            self.db, actor, self._ref(request), optional_text(body, "note"), self.settings), needs="operator")

    async def close(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: incidents.close(
            self.db, actor, self._ref(request), required_text(body, "note"), self.settings), needs="operator")
