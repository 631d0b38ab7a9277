"""gatehouse review …"""

from __future__ import annotations

import typer

from gatehouse.cli.client import control_plane, quoted
from gatehouse.cli.common import JsonOption, console, handles_errors, print_json, print_table, safe

app = typer.Typer(help="Access reviews: owners attest each identity they own (keep / narrow / retire).",
                  no_args_is_help=True)


@app.command("start")
@handles_errors
def start(due: str = typer.Option("14d", "--due", help="Time owners have to attest, e.g. 14d.")) -> None:
    """Open a review of every identity (identity-admin). Unattested at the due date: suspended."""

    opened = control_plane().post("/admin/reviews", {"due": due})
    console.print(f"review {opened['review']} opened: {opened['identities']} identities to attest within {safe(due)}")


@app.command("attest")
@handles_errors
def attest(
    name: str = typer.Argument(..., help="Identity you own."),
    decision: str = typer.Argument(..., help="keep, narrow or retire."),
    note: str = typer.Option(None, "--note", help="Why (required for narrow: what to narrow)."),
) -> None:
    """Answer the open review for an identity you own. retire revokes its keys now."""

    control_plane().post(f"/admin/identities/{quoted(name)}/attest", {"decision": decision, "note": note})
    console.print(f"{safe(name)}: {safe(decision)} recorded")


@app.command("status")
@handles_errors
def status(json: bool = JsonOption) -> None:
    """Every review item and its answer."""

    rows = control_plane().get("/admin/reviews")["reviews"]
    if json:
        print_json(rows)
    else:
        print_table("Reviews", ["review", "status", "due", "identity", "owner", "decision"],
                    [(r["review"], r["status"], r["due_at"], r["identity"], r["owner"], r["decision"] or "waiting")
                     for r in rows])


@app.command("enforce")
@handles_errors
def enforce() -> None:
    """Close reviews past their due date, suspending unattested identities (the gateway also does
    this every minute)."""

    suspended = control_plane().post("/admin/reviews/enforce")["suspended"]
    console.print(f"suspended: {safe(', '.join(suspended))}" if suspended else "nothing past due", highlight=False)
