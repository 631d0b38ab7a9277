"""gatehouse identity …"""

from __future__ import annotations

import typer

from gatehouse.cli.common import JsonOption, console, handles_errors, open_db, print_json, print_table
from gatehouse.config import local_actor
from gatehouse.identity import service

app = typer.Typer(help="Workload identities: the callers of the data plane, each with a human owner.",
                  no_args_is_help=True)


def _labels(values: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid label {value!r}: use KEY=VALUE")
        labels[key] = val
    return labels


@app.command("create")
@handles_errors
def create(
    name: str = typer.Argument(..., help="Identity name, e.g. billing-summariser (lowercase, digits, . _ -)."),
    owner: str = typer.Option(..., "--owner", help="E-mail of the active person who answers for it."),
    team: str = typer.Option(None, "--team", help="Team (defaults to the owner's team)."),
    env: str = typer.Option("dev", "--env", help="Environment: dev, staging, prod…; grants can match on it."),
    purpose: str = typer.Option(None, "--purpose", help="What it is for, in a sentence."),
    backup_owner: str = typer.Option(None, "--backup-owner", help="E-mail of a second person who can take over."),
    clearance: str = typer.Option("internal", "--clearance", help="Highest data class it may send."),
    label: list[str] = typer.Option(None, "--label", help="KEY=VALUE label; repeat for more."),
    json: bool = JsonOption,
) -> None:
    """Create a workload identity owned by a person."""
    identity = service.create_identity(
        open_db(), local_actor(), name, owner, team=team, environment=env, purpose=purpose,
        backup_owner_email=backup_owner, data_clearance=clearance, labels=_labels(label),
    )
    if json:
        print_json(service.describe_identity(open_db(upgrade=False), identity.name))
    else:
        console.print(f"created identity [bold]{identity.name}[/] (owner {owner}, env {identity.environment}, "
                      f"status {identity.status})")
        console.print(f"next: [cyan]gatehouse key issue {identity.name} --ttl 30d[/]")


@app.command("list")
@handles_errors
def list_(json: bool = JsonOption) -> None:
    """List identities with their owners."""
    rows = service.list_identities(open_db())
    if json:
        print_json([{"name": i.name, "owner": o.email, "team": i.team, "environment": i.environment,
                     "status": i.status, "purpose": i.purpose} for i, o in rows])
    else:
        print_table("Identities", ["name", "owner", "team", "env", "status", "purpose"],
                    [(i.name, o.email, i.team, i.environment, i.status, i.purpose) for i, o in rows])


@app.command("show")
@handles_errors
def show(name: str = typer.Argument(..., help="Identity name."), json: bool = JsonOption) -> None:
    """Show one identity and its keys."""
    info = service.describe_identity(open_db(), name)
    if json:
        print_json(info)
        return
    for field in ("name", "status", "owner", "backup_owner", "team", "environment", "purpose",
                  "data_clearance", "labels", "created_at", "created_by", "review_due_at", "attention"):
        console.print(f"[bold]{field:>15}[/]  {info[field] if info[field] not in (None, {}) else '-'}", highlight=False)
    print_table("Keys", ["key id", "status", "scopes", "expires", "last used"],
                [(k["key_id"], k["status"], ",".join(k["scopes"] or []) or "(all granted)", k["expires_at"],
                  k["last_used_at"] or "never") for k in info["keys"]])


def _status_command(action: str, help_text: str):  # type: ignore[no-untyped-def]
    @handles_errors
    def command(
        name: str = typer.Argument(..., help="Identity name."),
        reason: str = typer.Option(None, "--reason", help="Why; recorded in the audit log."),
        json: bool = JsonOption,
    ) -> None:
        identity = service.change_identity_status(open_db(), local_actor(), name, action, reason)
        if json:
            print_json({"name": identity.name, "status": identity.status})
        else:
            console.print(f"identity [bold]{identity.name}[/] is now {identity.status}")

    command.__doc__ = help_text
    app.command(action)(command)


_status_command("suspend", "Suspend an identity: its keys stop working on every worker within a second.")
_status_command("resume", "Resume a suspended identity.")
_status_command("retire", "Retire an identity for good and revoke all its keys.")


@app.command("attended")
@handles_errors
def attended(
    name: str = typer.Argument(..., help="Identity name."),
    note: str = typer.Option(None, "--note", help="What was done; recorded in the audit log."),
) -> None:
    """Clear an identity's attention flag (a leaked key, an orphaning) once its owner has acted."""
    from gatehouse.identity.lifecycle import clear_attention

    clear_attention(open_db(), local_actor(), name, note)
    console.print(f"identity [bold]{name}[/] needs no more attention")
