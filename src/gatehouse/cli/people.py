"""gatehouse person …"""

from __future__ import annotations

from typing import Any

import typer

from gatehouse.cli.common import JsonOption, console, err_console, handles_errors, local_actor, open_db, print_json, print_table, settings
from gatehouse.core import clock
from gatehouse.core.durations import parse_duration
from gatehouse.core.webhook import notify
from gatehouse.identity import service
from gatehouse.identity.admin_keys import issue_admin_key
from gatehouse.identity.admin_keys import revoke_admin_key as revoke
from gatehouse.identity.events import orphan_event
from gatehouse.identity.governance import change_role, list_roles
from gatehouse.identity.lifecycle import depart_person
from gatehouse.store.models import Person

app = typer.Typer(help="People: the humans who own workload identities.", no_args_is_help=True)


def _person_dict(person: Person) -> dict[str, Any]:
    return {"email": person.email, "name": person.name, "team": person.team, "status": person.status,
            "created_at": clock.as_utc(person.created_at).isoformat()}


@app.command("add")
@handles_errors
def add(
    email: str = typer.Argument(..., help="The person's e-mail address; their handle everywhere."),
    team: str = typer.Option(None, "--team", help="Team they belong to; identities they create inherit it."),
    name: str = typer.Option(None, "--name", help="Display name."),
    json: bool = JsonOption,
) -> None:
    """Add a person who can own identities."""
    person = service.add_person(open_db(), local_actor(), email, team=team, name=name)
    if json:
        print_json(_person_dict(person))
    else:
        console.print(f"added person [bold]{person.email}[/] (team {person.team or '-'})")


@app.command("list")
@handles_errors
def list_(json: bool = JsonOption) -> None:
    """List people."""
    people = [_person_dict(p) for p in service.list_people(open_db())]
    if json:
        print_json(people)
    else:
        print_table("People", ["email", "name", "team", "status"],
                    [(p["email"], p["name"], p["team"], p["status"]) for p in people])


@app.command("depart")
@handles_errors
def depart(
    email: str = typer.Argument(..., help="The person who is leaving."),
    json: bool = JsonOption,
) -> None:
    """Offboard a person: identities they own pass to their backup owner (and come up for
    review) or, without an active backup, are suspended as orphaned; keys stop within a second."""

    report = depart_person(open_db(), local_actor(), email)
    delivery = notify(settings().notify_webhook, orphan_event(report.person, report.suspended)) if report.suspended \
        else None
    if json:
        print_json({**report.as_dict(), "notification": delivery})
        return
    console.print(f"[bold]{report.person}[/] has departed", highlight=False)
    rows = ([(r["identity"], f"reassigned to {r['to']} (review due now)") for r in report.reassigned]
            + [(name, "suspended: orphaned, no active backup owner") for name in report.suspended]
            + [(name, "backup owner removed") for name in report.backup_removed])
    if rows:
        print_table("Identities", ["identity", "what happened"], rows)
    else:
        console.print("they owned no identities")
    if delivery:
        console.print(f"notification about orphaned identities: {delivery}", highlight=False)


def _role_command(grant: bool) -> None:
    @handles_errors
    def command(
        email: str = typer.Argument(..., help="The person."),
        role: str = typer.Argument(..., help="identity-admin, policy-admin, approver, auditor or operator."),
    ) -> None:

        change_role(open_db(), local_actor(), email, role, grant)
        console.print(f"{'granted' if grant else 'revoked'} {role} {'to' if grant else 'from'} {email.lower()}",
                      highlight=False)

    command.__doc__ = ("Give a person a control-plane role (nobody changes their own roles)." if grant
                       else "Take a control-plane role away (nobody changes their own roles).")
    app.command("grant-role" if grant else "revoke-role")(command)


_role_command(True)
_role_command(False)


@app.command("roles")
@handles_errors
def roles(json: bool = JsonOption) -> None:
    """Who holds which control-plane role."""

    rows = list_roles(open_db())
    if json:
        print_json(rows)
    else:
        print_table("Roles", ["email", "role", "granted by", "granted at"],
                    [(r["email"], r["role"], r["granted_by"], r["granted_at"]) for r in rows])


@app.command("admin-key")
@handles_errors
def admin_key(
    email: str = typer.Argument(..., help="The person the key is for."),
    ttl: str = typer.Option("30d", "--ttl", help="Lifetime (at most GATEHOUSE_MAX_KEY_TTL)."),
) -> None:
    """Issue a person's key to the admin API (GET /admin/inventory, /admin/findings,
    /admin/credential-report need the auditor or identity-admin role). Shown once."""

    config = settings()
    row, text = issue_admin_key(open_db(), local_actor(), email, pepper=config.pepper(), ttl=parse_duration(ttl),
                                max_ttl=config.max_key_ttl)
    err_console.print(f"admin key [bold]{row.id}[/] for {email.lower()}, expires {row.expires_at.isoformat()}; "
                      "shown only now:", highlight=False)
    print(text)


@app.command("revoke-admin-key")
@handles_errors
def revoke_admin_key(key_id: str = typer.Argument(..., help="Admin key id.")) -> None:
    """Revoke an admin key (departing a person revokes all of theirs)."""

    revoke(open_db(), local_actor(), key_id)
    console.print(f"revoked admin key {key_id}")
