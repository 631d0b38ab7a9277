"""People, their roles and their admin keys over the admin API (``gatehouse person …``).

Adding, departing, granting roles and issuing admin keys need identity-admin, checked before a
body is read; the service layer checks the rest (nobody changes their own roles). Every active
person may read who the people are and who holds which role: that is how an owner finds a
backup owner or an approver.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import MAX_EMAIL, MAX_NAME, RoleCheckedApi, actor_of, optional_duration, optional_text, required_text
from gatehouse.api.errors import ApiError
from gatehouse.authz import roles_of
from gatehouse.core import clock
from gatehouse.core.webhook import notify
from gatehouse.identity import service
from gatehouse.identity.admin_keys import AdminPrincipal, issue_admin_key, redeem_admin_key, revoke_admin_key
from gatehouse.identity.credentials import check_key_id
from gatehouse.identity.events import orphan_event
from gatehouse.identity.governance import change_role, list_roles
from gatehouse.identity.lifecycle import depart_person
from gatehouse.store.models import AdminKey, Person

ADMIN = "identity-admin"


def person_dict(person: Person) -> dict[str, Any]:
    """What ``gatehouse person list --json`` prints for each person."""
    return {"email": person.email, "name": person.name, "team": person.team, "status": person.status,
            "created_at": clock.as_utc(person.created_at).isoformat()}


def admin_key_event(key_id: str, person: str, expires_at: str, issued_by: str) -> dict[str, Any]:
    """What the webhook hears when an admin key is issued in someone's name: never the key."""
    return {"event": "admin_key.issued", "key_id": key_id, "person": person, "expires_at": expires_at,
            "issued_by": issued_by,
            "action": "an admin key was issued in your name: if you did not ask for it, tell an identity-admin"}


class PeopleApi(RoleCheckedApi):

    async def whoami(self, request: Request) -> Response:
        return await self._call(request, lambda principal, body: {
            "email": principal.email, "roles": sorted(principal.roles), "key_id": principal.key_id,
            "enrolment": principal.enrolment}, enrolment=True)

    async def redeem_admin_key(self, request: Request) -> Response:
        """An enrolment key in, the person's own key out (shown once); the enrolment key stops."""
        def work(principal: AdminPrincipal, body: dict[str, Any]) -> dict[str, Any]:
            ttl = optional_duration(body, "ttl", "30d")
            assert ttl is not None
            row, key = redeem_admin_key(self.db, principal, pepper=self.pepper, ttl=ttl,
                                        max_ttl=self.settings.max_key_ttl)
            notification = notify(self.settings.notify_webhook, {
                "event": "admin_key.redeemed", "person": principal.email, "enrolment_key": principal.key_id,
                "admin_key": row.id, "action": "if you did not exchange this key yourself, report it now"})
            return {"key_id": row.id, "person": principal.email, "expires_at": clock.as_utc(row.expires_at).isoformat(),
                    "key": key, "replaced": principal.key_id, "notification": notification}
        return await self._call(request, work, status=201, fields=("ttl",), enrolment=True)

    async def people(self, request: Request) -> Response:
        return await self._call(request, lambda principal, body: {
            "people": [person_dict(p) for p in service.list_people(self.db)]})

    async def add(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            person = service.add_person(self.db, actor, required_text(body, "email", MAX_EMAIL),
                                        team=optional_text(body, "team", 100), name=optional_text(body, "name", MAX_NAME))
            return person_dict(person)
        return await self._run(request, work, status=201, needs=ADMIN, fields=("email", "team", "name"))

    async def show(self, request: Request) -> Response:
        def work(principal: AdminPrincipal, body: dict[str, Any]) -> dict[str, Any]:
            person = service.get_person(self.db, self._path(request, "email"))
            with self.db.read() as session:
                roles = sorted(roles_of(session, person.email))
            return {**person_dict(person), "roles": roles}
        return await self._call(request, work)

    async def depart(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            report = depart_person(self.db, actor, self._path(request, "email"))
            delivery = (notify(self.settings.notify_webhook, orphan_event(report.person, report.suspended))
                        if report.suspended else None)
            return {**report.as_dict(), "notification": delivery}
        return await self._run(request, work, needs=ADMIN)

    async def roles(self, request: Request) -> Response:
        return await self._call(request, lambda principal, body: {"roles": list_roles(self.db)})

    async def grant_role(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            email, role = self._path(request, "email").lower(), required_text(body, "role", 64)
            change_role(self.db, actor, email, role, True)
            return {"email": email, "role": role, "granted": True}
        return await self._run(request, work, status=201, needs=ADMIN, fields=("role",))

    async def revoke_role(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            email, role = self._path(request, "email").lower(), self._path(request, "role")
            change_role(self.db, actor, email, role, False)
            return {"email": email, "role": role, "granted": False}
        return await self._run(request, work, needs=ADMIN)

    async def issue_admin_key(self, request: Request) -> Response:
        def work(actor: str, body: dict[str, Any]) -> dict[str, Any]:
            ttl = optional_duration(body, "ttl", "30d")
            assert ttl is not None
            row, text = issue_admin_key(self.db, actor, self._path(request, "email"), pepper=self.pepper, ttl=ttl,
                                        max_ttl=self.settings.max_key_ttl)
            with self.db.read() as session:
                person = session.get(Person, row.person_id)
            email = person.email if person is not None else self._path(request, "email").lower()
            expires = clock.as_utc(row.expires_at).isoformat()
            delivery = notify(self.settings.notify_webhook, admin_key_event(row.id, email, expires, actor))
            return {"key_id": row.id, "person": email, "expires_at": expires, "key": text, "enrolment": row.enrolment,
                    "notification": delivery}
        return await self._run(request, work, status=201, needs=ADMIN, fields=("ttl",))

    async def revoke_admin_key(self, request: Request) -> Response:
        """An identity-admin revokes anyone's admin key; anyone may revoke their own."""
        def work(principal: AdminPrincipal, body: dict[str, Any]) -> dict[str, Any]:
            key_id = self._path(request, "key_id")
            check_key_id(key_id)
            if ADMIN not in principal.roles:
                with self.db.read() as session:
                    owner = session.execute(select(Person.email).join(AdminKey, AdminKey.person_id == Person.id)
                                            .where(AdminKey.id == key_id)).scalar_one_or_none()
                if owner != principal.email:
                    raise ApiError(403, f"{principal.email} may revoke only their own admin keys (or hold {ADMIN})",
                                   "forbidden")
            revoke_admin_key(self.db, actor_of(principal), key_id)
            return {"key_id": key_id, "status": "revoked"}
        return await self._call(request, work)
