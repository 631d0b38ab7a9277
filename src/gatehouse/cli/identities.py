"""gatehouse identity …"""

from __future__ import annotations

import sys
from typing import Any

import typer

from gatehouse.cli.client import control_plane, quoted
from gatehouse.cli.common import JsonOption, console, handles_errors, print_json, print_table, safe

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
    identity = control_plane().post("/admin/identities", {
        "name": name, "owner": owner, "team": team, "environment": env, "purpose": purpose,
        "backup_owner": backup_owner, "data_clearance": clearance, "labels": _labels(label) or None})
    if json:
        print_json(identity)
    else:
        console.print(f"created identity [bold]{safe(identity['name'])}[/] (owner {safe(owner)}, env {safe(identity['environment'])}, "
                      f"status {safe(identity['status'])})")
        if identity["status"] == "pending":
            console.print(f"next: an identity-admin other than you runs [cyan]gatehouse identity approve {safe(identity['name'])}[/]")
        else:
            console.print(f"next: [cyan]gatehouse key issue {safe(identity['name'])} --ttl 30d[/]")


@app.command("list")
@handles_errors
def list_(json: bool = JsonOption) -> None:
    """List identities with their owners."""
    rows = control_plane().get("/admin/identities")["identities"]
    if json:
        print_json(rows)
    else:
        print_table("Identities", ["name", "owner", "team", "env", "status", "purpose"],
                    [(r["name"], r["owner"], r["team"], r["environment"], r["status"], r["purpose"]) for r in rows])


@app.command("show")
@handles_errors
def show(name: str = typer.Argument(..., help="Identity name."), json: bool = JsonOption) -> None:
    """Show one identity and its keys."""
    info = control_plane().get(f"/admin/identities/{quoted(name)}")
    if json:
        print_json(info)
        return
    for field in ("name", "status", "owner", "backup_owner", "team", "environment", "purpose",
                  "data_clearance", "labels", "created_at", "created_by", "review_due_at", "attention"):
        console.print(f"[bold]{field:>15}[/]  {safe(info[field] if info[field] not in (None, {}) else '-')}", highlight=False)
    print_table("Keys", ["key id", "status", "scopes", "expires", "last used"],
                [(k["key_id"], k["status"], ",".join(k["scopes"] or []) or "(all granted)", k["expires_at"],
                  k["last_used_at"] or "never") for k in info["keys"]])


def _status_command(action: str, help_text: str) -> None:
    @handles_errors
    def command(
        name: str = typer.Argument(..., help="Identity name."),
        reason: str = typer.Option(None, "--reason", help="Why; recorded in the audit log."),
        json: bool = JsonOption,
    ) -> None:
        identity = control_plane().post(f"/admin/identities/{quoted(name)}/{action}", {"reason": reason})
        if json:
            print_json({"name": identity["name"], "status": identity["status"]})
        else:
            console.print(f"identity [bold]{safe(identity['name'])}[/] is now {safe(identity['status'])}")

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
    """Clear an identity's attention flag (a leaked key, an orphaning) once its owner has acted
    (identity-admin)."""
    control_plane().post(f"/admin/identities/{quoted(name)}/attended", {"note": note})
    console.print(f"identity [bold]{safe(name)}[/] needs no more attention")


def _decision_command(approve: bool) -> None:
    @handles_errors
    def command(
        name: str = typer.Argument(..., help="Identity name."),
        reason: str = typer.Option(None, "--reason", help="Why; recorded in the audit log."),
    ) -> None:
        decision = "approve" if approve else "reject"
        identity = control_plane().post(f"/admin/identities/{quoted(name)}/{decision}", {"reason": reason})
        console.print(f"identity [bold]{safe(identity['name'])}[/] is now {safe(identity['status'])}")

    command.__doc__ = ("Approve a pending identity (an identity-admin other than its requester)." if approve
                       else "Reject a pending identity (it is retired).")
    app.command("approve" if approve else "reject")(command)


_decision_command(True)
_decision_command(False)


@app.command("set-clearance")
@handles_errors
def set_clearance(
    name: str = typer.Argument(..., help="Identity name."),
    clearance: str = typer.Argument(..., help="public, internal, confidential or restricted."),
) -> None:
    """Change the highest data class an identity may send. Raising it needs an identity-admin who
    has never owned, backed up or requested the identity."""
    identity = control_plane().post(f"/admin/identities/{quoted(name)}/clearance", {"clearance": clearance})
    console.print(f"identity [bold]{safe(identity['name'])}[/] may now send up to {safe(identity['data_clearance'])} data")


@app.command("transfer")
@handles_errors
def transfer(
    name: str = typer.Argument(..., help="Identity name."),
    owner: str = typer.Option(None, "--owner", help="E-mail of the new owner."),
    team: str = typer.Option(None, "--team", help="The new team (grants may match on it)."),
    yes: bool = typer.Option(False, "--yes", help="Confirm without asking (the access change is still shown)."),
    json: bool = JsonOption,
) -> None:
    """Move an identity to another owner or team. Shows its access before and after, then asks;
    the identity comes up for review by its owner."""
    if owner is None and team is None:
        raise ValueError("give --owner, --team or both")
    path = f"/admin/identities/{quoted(name)}/transfer"
    plan = control_plane().post(path + "/plan", {"owner": owner, "team": team})
    note = None if plan["policy_version"] else "no policy version is active yet: access before and after is unknown"
    if json:
        print_json({**plan, "confirmed": yes, "note": note})
    else:
        _show_plan(name, plan, note)
    interactive = sys.stdin.isatty() and not json
    if not yes and not (interactive and typer.confirm("apply this change?", default=False)):
        if not json:
            console.print("nothing changed (pass --yes to apply without asking)")
        raise typer.Exit(1)
    control_plane().post(path, {"owner": owner, "team": team, "expect": plan})  # refused if the plan changed since
    if not json:
        console.print(f"moved; {safe(name)} is up for review by {safe(plan['owner'][1])}")


def _show_plan(name: str, plan: dict[str, Any], note: str | None) -> None:
    (owner_before, owner_after), (team_before, team_after) = plan["owner"], plan["team"]
    console.print(f"[bold]{safe(name)}[/]: owner {safe(owner_before)} → {safe(owner_after)}, "
                  f"team {safe(team_before or '-')} → {safe(team_after or '-')}",
                  highlight=False)
    gains = ", ".join(plan["gained"])
    raised = "; ".join(f"{alias} {before} → {after}" for alias, (before, after) in plan["data_classes_changed"].items())
    if plan["widens"] and not gains:
        gains = "unknown: no policy version is active to judge it"
    console.print(f"  gains: {safe(gains or 'nothing')}" + (f" (data class: {safe(raised)})" if raised else ""), highlight=False)
    console.print(f"  loses: {safe(', '.join(plan['lost']) or 'nothing')}", highlight=False)
    console.print(f"  access after: {safe(', '.join(plan['aliases_after']) or 'no model')}", highlight=False)
    if note:
        console.print(f"[yellow]note:[/] {safe(note)}", highlight=False)
