"""The read-only admin API: inventory, findings and the credential report.

Callers are people with an admin key (``gatehouse person admin-key``) holding the auditor or
identity-admin role. Workload keys are refused with 403. Everything is judged against the
version the store says is active, as the CLI does, and read in a worker thread; none of it is
on the inference path.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import RoleCheckedApi
from gatehouse.api.errors import ApiError
from gatehouse.oversight.findings import REPORT_COLUMNS, Thresholds, as_csv, compute_findings, credential_report
from gatehouse.oversight.inventory import COLUMNS, inventory
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.policy.versions import active_compiled, in_force


class InventoryApi(RoleCheckedApi):
    readers = frozenset({"auditor", "identity-admin"})

    async def _serve(self, request: Request, build: Callable[[CompiledPolicy | None], Any],
                     csv_columns: tuple[str, ...] | None, wrap: str) -> Response:
        fmt = request.query_params.get("format", "json")

        def work(actor: str, body: dict[str, Any]) -> Response:
            if fmt not in ("json", "csv") or (fmt == "csv" and csv_columns is None):
                raise ApiError(400, "format is json" + (" or csv" if csv_columns else ""), "invalid_value", "format")
            if wrap == "credentials":  # keys need no policy: name the version in force without reading it
                policy, version = None, in_force(self.db)
            else:
                policy = active_compiled(self.db)
                version = policy.version if policy is not None else None
            rows = build(policy)
            if fmt == "csv":
                assert csv_columns is not None
                return Response(as_csv(rows, csv_columns), media_type="text/csv; charset=utf-8")
            return Response(orjson.dumps({wrap: rows, "policy_version": version}), media_type="application/json")
        return await self._run(request, work, read=True)

    async def inventory(self, request: Request) -> Response:
        return await self._serve(request, lambda policy: inventory(self.db, policy, self.settings), COLUMNS, "inventory")

    async def findings(self, request: Request) -> Response:
        try:
            days = {name: _days(request, name) for name in ("unused_days", "expiry_days", "rotation_days")}
        except ApiError as error:
            return error.response()
        defaults = Thresholds(rotation=self.settings.key_rotation_age)
        thresholds = Thresholds(unused=days["unused_days"] or defaults.unused, expiry=days["expiry_days"] or defaults.expiry,
                                rotation=days["rotation_days"] or defaults.rotation)
        return await self._serve(request, lambda policy: [f.as_dict() for f in compute_findings(self.db, policy, thresholds)],
                                 None, "findings")

    async def credential_report(self, request: Request) -> Response:
        return await self._serve(request, lambda policy: credential_report(self.db), REPORT_COLUMNS, "credentials")


def _days(request: Request, name: str) -> timedelta | None:
    """A whole number of days from the query string (1 to 3650), or None when absent."""
    text = request.query_params.get(name)
    if text is None:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 3650:
        raise ApiError(400, f"{name} is a whole number of days from 1 to 3650", "invalid_value", name)
    return timedelta(days=int(text))
