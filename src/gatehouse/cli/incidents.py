"""gatehouse incident …"""

from __future__ import annotations

import typer

from gatehouse.cli.client import control_plane, quoted
from gatehouse.cli.common import JsonOption, console, handles_errors, print_json, print_table, safe
from gatehouse.core.display import shown

app = typer.Typer(help="Incidents opened by monitoring thresholds: read, acknowledge, close.", no_args_is_help=True)


@app.command("list")
@handles_errors
def list_(status: str = typer.Option(None, "--status", help="open, acknowledged or closed (default: not closed)."),
          json: bool = JsonOption) -> None:
    """Incidents, newest first."""

    rows = control_plane().get("/admin/incidents", status=status)["incidents"]
    if json:
        print_json(rows)
        return
    print_table("Incidents", ["id", "status", "threshold", "subject", "opened", "now", "steps taken"],
                [(r["id"], r["status"], r["threshold"], f"{r['scope']} {r['subject']}", r["opened_at"],
                  "breaching" if r["breaching"] else "clear", ", ".join(s["action"] for s in r["steps"]) or "-")
                 for r in rows])


@app.command("show")
@handles_errors
def show(incident: str = typer.Argument(..., help="Incident id (inc-…)."), json: bool = JsonOption) -> None:
    """One incident: the condition, the ladder steps taken and their outcomes, who acted."""

    row = control_plane().get(f"/admin/incidents/{quoted(incident)}")
    if json:
        print_json(row)
        return
    print_table(f"Incident {row['id']}", ["field", "value"],
                [(name, row[name]) for name in ("status", "threshold", "scope", "subject", "condition", "opened_at",
                                                "breaching", "last_value", "last_checked_at", "policy_version",
                                                "acknowledged_by", "acknowledged_at", "closed_by", "closed_at", "note")]
                + [(f"step {s['step']}", f"{s['action']} at {s['at']}: {s['outcome']}") for s in row["steps"]])


@app.command("ack")
@handles_errors
def ack(incident: str = typer.Argument(..., help="Incident id."),
        message: str = typer.Option(None, "-m", "--message", help="What you are doing about it.")) -> None:
    """Acknowledge (operator): the escalation ladder stops climbing."""

    control_plane().post(f"/admin/incidents/{quoted(incident)}/acknowledge", {"note": message})
    console.print(f"{safe(incident)} acknowledged", highlight=False)


@app.command("close")
@handles_errors
def close(incident: str = typer.Argument(..., help="Incident id."),
          message: str = typer.Option(..., "-m", "--message", help="What happened and what was done.")) -> None:
    """Close (operator). Keys the ladder suspended stay suspended until an identity-admin resumes
    the identity."""

    row = control_plane().post(f"/admin/incidents/{quoted(incident)}/close", {"note": message})
    console.print(f"{safe(incident)} closed", highlight=False)
    if any(step["action"] == "suspend_keys" and step["outcome"] == "suspended" for step in row["steps"]):
        console.print(f"identity {shown(row['subject'])} is still suspended: `gatehouse identity resume {shown(row['subject'])}` "
                      "(identity-admin) once it is safe", highlight=False, markup=False)


@app.command("check")
@handles_errors
def check() -> None:
    """Evaluate the active policy's thresholds now (the gateway does this every 15 s)."""
    result = control_plane().post("/admin/incidents/check")
    opened = result["opened"]
    checked = f"{result['thresholds']} thresholds checked; " if "thresholds" in result else ""
    console.print(f"{safe(checked)}new incidents: {safe(', '.join(opened) if opened else 'none')}", highlight=False)
