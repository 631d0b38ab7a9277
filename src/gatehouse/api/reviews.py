"""Access reviews over the admin API (``gatehouse review …``).

An identity-admin opens a review and enforces it; each owner attests their own identities (the
service layer checks who owns what). identity-admins and auditors read every review item;
anyone else the items put to them.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import MAX_NAME, RoleCheckedApi, optional_text, required_duration, required_text
from gatehouse.api.identities import sees_everything
from gatehouse.identity.admin_keys import AdminPrincipal
from gatehouse.identity.governance import attest, enforce_reviews, review_status, start_review

ADMIN = "identity-admin"


class ReviewApi(RoleCheckedApi):

    async def start(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            campaign, count = start_review(self.db, actor, required_duration(body, "due"))
            return {"review": campaign, "identities": count}
        return await self._run(request, work, status=201, needs=ADMIN, fields=("due",))

    async def reviews(self, request: Request) -> Response:
        def work(principal: AdminPrincipal, body: dict[str, Any]) -> dict[str, Any]:
            rows = review_status(self.db)
            everything = sees_everything(principal)
            return {"reviews": [row for row in rows if everything or row["owner"] == principal.email]}
        return await self._call(request, work)

    async def attest(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            name, decision = self._path(request, "name"), required_text(body, "decision", 16)
            item = attest(self.db, actor, name, decision, optional_text(body, "note", MAX_NAME * 10))
            return {"identity": name, "review": item.campaign_id, "decision": item.decision, "note": item.note}
        return await self._run(request, work, fields=("decision", "note"))

    async def enforce(self, request: Request) -> Response:
        return await self._run(request, lambda actor, body: {"suspended": enforce_reviews(self.db, actor)}, needs=ADMIN)
