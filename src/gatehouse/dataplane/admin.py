"""The read-only admin API: inventory, findings and the credential report.

Callers are people with an admin key (``gatehouse person admin-key``) holding the auditor or
identity-admin role. Workload keys are refused with 403. Everything here reads the store in
a worker thread; none of it is on the inference path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gatehouse.config import Settings
from gatehouse.dataplane.errors import ApiError
from gatehouse.identity.admin_keys import AdminAuthError, AdminPrincipal, authenticate_admin
from gatehouse.identity.findings import REPORT_COLUMNS, Thresholds, as_csv, compute_findings, credential_report
from gatehouse.identity.inventory import COLUMNS, inventory
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.store.db import Database

READERS = frozenset({"auditor", "identity-admin"})


class AdminApi:
    def __init__(self, db: Database, pepper: bytes, settings: Settings, policy: Callable[[], CompiledPolicy]) -> None:
        self.db = db
        self.pepper = pepper
        self.settings = settings
        self._policy = policy

    @property
    def policy(self) -> CompiledPolicy:
        return self._policy()

    async def _reader(self, request: Request) -> AdminPrincipal:
        try:
            principal = await asyncio.to_thread(authenticate_admin, self.db, self.pepper,
                                                request.headers.get("authorization"))
        except AdminAuthError as exc:
            raise ApiError(exc.status, exc.message, exc.code) from None
        if not principal.roles & READERS:
            raise ApiError(403, f"{principal.email} needs the auditor or identity-admin role", "admin_forbidden")
        return principal

    async def _serve(self, request: Request, build: Callable[[], Any], csv_columns: tuple[str, ...] | None,
                     wrap: str) -> Response:
        try:
            await self._reader(request)
            fmt = request.query_params.get("format", "json")
            if fmt not in ("json", "csv") or (fmt == "csv" and csv_columns is None):
                raise ApiError(400, "format is json" + (" or csv" if csv_columns else ""), "invalid_value", "format")
        except ApiError as error:
            return error.response()
        rows = await asyncio.to_thread(build)
        if fmt == "csv":
            assert csv_columns is not None
            return Response(as_csv(rows, csv_columns), media_type="text/csv; charset=utf-8")
        return Response(orjson.dumps({wrap: rows, "policy_version": self.policy.version}), media_type="application/json")

    async def inventory(self, request: Request) -> Response:
        return await self._serve(request, lambda: inventory(self.db, self.policy, self.settings), COLUMNS, "inventory")

    async def findings(self, request: Request) -> Response:
        thresholds = Thresholds(rotation=self.settings.key_rotation_age)
        return await self._serve(request, lambda: [f.as_dict() for f in compute_findings(self.db, self.policy, thresholds)],
                                 None, "findings")

    async def credential_report(self, request: Request) -> Response:
        return await self._serve(request, lambda: credential_report(self.db), REPORT_COLUMNS, "credentials")
