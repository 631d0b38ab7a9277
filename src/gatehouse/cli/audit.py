"""gatehouse audit …"""

from __future__ import annotations

import orjson
import typer
from sqlalchemy import select

from gatehouse import audit as audit_log
from gatehouse.cli.common import JsonOption, console, err_console, handles_errors, open_db, print_json, print_table
from gatehouse.store.models import AuditEntry

app = typer.Typer(help="The hash-chained log of every control-plane change.", no_args_is_help=True)


@app.command("verify")
@handles_errors
def verify(json: bool = JsonOption) -> None:
    """Recompute the hash chain and name the first entry that does not match."""
    db = open_db()
    with db.read() as session:
        result = audit_log.verify(session)
    if json:
        print_json({"ok": result.ok, "entries": result.entries, "head": result.head_hash,
                    "first_bad_entry": result.first_bad_seq, "problem": result.problem})
    elif result.ok:
        console.print(f"[green]ok[/] — {result.entries} entries, head {result.head_hash}")
    else:
        err_console.print(f"[bold red]BROKEN[/] at entry {result.first_bad_seq}: {result.problem} "
                          f"({result.entries} entries verified before it)", highlight=False)
    if not result.ok:
        raise typer.Exit(2)


@app.command("log")
@handles_errors
def log(limit: int = typer.Option(50, "--limit", min=1, help="How many of the newest entries."),
        json: bool = JsonOption) -> None:
    """Show the newest entries."""
    db = open_db()
    with db.read() as session:
        rows = session.execute(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)).scalars().all()
    entries = [{"seq": e.seq, "ts": e.ts, "actor": e.actor, "action": e.action, "target": e.target,
                "details": orjson.loads(e.details), "hash": e.hash} for e in reversed(rows)]
    if json:
        print_json(entries)
    else:
        print_table("Audit log", ["#", "time", "actor", "action", "target"],
                    [(e["seq"], e["ts"], e["actor"], e["action"], e["target"]) for e in entries])
