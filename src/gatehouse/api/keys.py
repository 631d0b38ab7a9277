"""Workload keys over the admin API (``gatehouse key …``).

identity-admins and auditors read every key; anyone else the keys of the identities they own or
back up. A new key's text is in the answer that issues it and nowhere else. A leaked key sent
to ``/admin/keys/leaked`` is revoked; the answer names it by its id, never by its text.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import MAX_NAME, RoleCheckedApi, optional_duration, optional_text, optional_text_list, query_text, required_text
from gatehouse.api.identities import refused, visible_identities
from gatehouse.core.webhook import notify
from gatehouse.identity import service
from gatehouse.identity.admin_keys import AdminPrincipal
from gatehouse.identity.events import leak_event
from gatehouse.identity.lifecycle import report_leak, rotate_key


class KeyApi(RoleCheckedApi):

    async def keys(self, request: Request) -> Response:
        def work(principal: AdminPrincipal, body: dict[str, Any]) -> dict[str, Any]:
            name = query_text(request, "identity", 100)
            visible = visible_identities(self.db, principal)
            if visible is not None and name is not None and name not in visible:
                raise refused(principal, name)
            rows = service.list_keys(self.db, name)
            return {"keys": [row for row in rows if visible is None or row["identity"] in visible]}
        return await self._call(request, work)

    async def issue(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            name = self._path(request, "name")
            ttl = optional_duration(body, "ttl", "30d")
            assert ttl is not None
            credential, text = service.issue_key(self.db, actor, name, pepper=self.pepper, ttl=ttl,
                                                 max_ttl=self.settings.max_key_ttl,
                                                 scopes=optional_text_list(body, "scopes"))
            return {**service.key_summary(credential, name), "key": text}
        return await self._run(request, work, status=201, fields=("ttl", "scopes"))

    async def revoke(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            credential = service.revoke_key(self.db, actor, self._path(request, "key_id"),
                                            optional_text(body, "reason", MAX_NAME * 10))
            return {"key_id": credential.id, "status": credential.status}
        return await self._run(request, work, fields=("reason",))

    async def rotate(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            grace = optional_duration(body, "grace", "24h", zero=True)
            assert grace is not None
            rotation = rotate_key(self.db, actor, self._path(request, "key_id"), pepper=self.pepper, grace=grace,
                                  ttl=optional_duration(body, "ttl"), max_ttl=self.settings.max_key_ttl)
            return {"old_key_id": rotation.old_key_id, "old_key_stops_at": rotation.old_key_stops_at,
                    "key_id": rotation.new_key_id, "expires_at": rotation.new_key_expires_at, "key": rotation.new_key,
                    "identity": rotation.identity}
        return await self._run(request, work, status=201, fields=("grace", "ttl"))

    async def leaked(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            outcome = report_leak(self.db, actor, required_text(body, "key", 200),
                                  source=optional_text(body, "source", 2000), pepper=self.pepper)  # a whole key must be real
            event = leak_event(outcome)
            return {**event, "notification": notify(self.settings.notify_webhook, event)}
        return await self._run(request, work, fields=("key", "source"))
