"""gatehouse person …"""

from __future__ import annotations

import typer

from gatehouse.cli.client import control_plane, quoted
from gatehouse.cli.common import JsonOption, console, err_console, handles_errors, print_json, print_table, safe

app = typer.Typer(help="People: the humans who own workload identities.", no_args_is_help=True)


@app.command("add")
@handles_errors
def add(
    email: str = typer.Argument(..., help="The person's e-mail address; their handle everywhere."),
    team: str = typer.Option(None, "--team", help="Team they belong to; identities they create inherit it."),
    name: str = typer.Option(None, "--name", help="Display name."),
    json: bool = JsonOption,
) -> None:
    """Add a person who can own identities (identity-admin)."""
    person = control_plane().post("/admin/people", {"email": email, "team": team, "name": name})
    if json:
        print_json(person)
    else:
        console.print(f"added person [bold]{safe(person['email'])}[/] (team {safe(person['team'] or '-')})")


@app.command("list")
@handles_errors
def list_(json: bool = JsonOption) -> None:
    """List people."""
    people = control_plane().get("/admin/people")["people"]
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
    report = control_plane().post(f"/admin/people/{quoted(email)}/depart")
    if json:
        print_json(report)
        return
    console.print(f"[bold]{safe(report['person'])}[/] has departed", highlight=False)
    rows = ([(r["identity"], f"reassigned to {r['to']} (review due now)") for r in report["reassigned"]]
            + [(name, "suspended: orphaned, no active backup owner") for name in report["suspended"]]
            + [(name, "backup owner removed") for name in report["backup_removed"]])
    if rows:
        print_table("Identities", ["identity", "what happened"], rows)
    else:
        console.print("they owned no identities")
    if report.get("notification"):
        console.print(f"notification about orphaned identities: {safe(report['notification'])}", highlight=False)


def _role_command(grant: bool) -> None:
    @handles_errors
    def command(
        email: str = typer.Argument(..., help="The person."),
        role: str = typer.Argument(..., help="identity-admin, policy-admin, approver, auditor or operator."),
    ) -> None:
        if grant:
            control_plane().post(f"/admin/people/{quoted(email)}/roles", {"role": role})
        else:
            control_plane().delete(f"/admin/people/{quoted(email)}/roles/{quoted(role)}")
        console.print(f"{'granted' if grant else 'revoked'} {safe(role)} {'to' if grant else 'from'} {safe(email.lower())}",
                      highlight=False)

    command.__doc__ = ("Give a person a control-plane role (identity-admin; nobody changes their own roles)." if grant
                       else "Take a control-plane role away (identity-admin; nobody changes their own roles).")
    app.command("grant-role" if grant else "revoke-role")(command)


_role_command(True)
_role_command(False)


@app.command("roles")
@handles_errors
def roles(json: bool = JsonOption) -> None:
    """Who holds which control-plane role."""
    rows = control_plane().get("/admin/roles")["roles"]
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
    """Issue a person's key to the admin API (identity-admin). For someone else it is an
    enrolment key: good once, within 24 h, to get a key of their own (`gatehouse login`); the
    person is told through the notification webhook. Shown once."""
    issued = control_plane().post(f"/admin/people/{quoted(email)}/admin-keys", {"ttl": ttl})
    if issued.get("enrolment"):
        err_console.print(f"enrolment key [bold]{safe(issued['key_id'])}[/] for {safe(issued['person'])}, good until "
                          f"{safe(issued['expires_at'])} for one thing: they exchange it for their own key with "
                          "`gatehouse login` (you never see that one). Shown only now:", highlight=False)
    else:
        err_console.print(f"admin key [bold]{safe(issued['key_id'])}[/] for {safe(issued['person'])}, "
                          f"expires {safe(issued['expires_at'])}; "
                          "shown only now:", highlight=False)
    print(issued["key"])


@app.command("revoke-admin-key")
@handles_errors
def revoke_admin_key(key_id: str = typer.Argument(..., help="Admin key id.")) -> None:
    """Revoke an admin key (departing a person revokes all of theirs)."""
    control_plane().delete(f"/admin/admin-keys/{quoted(key_id)}")
    console.print(f"revoked admin key {safe(key_id)}")
