"""gatehouse findings, gatehouse inventory"""

from __future__ import annotations

from datetime import timedelta

import typer

from gatehouse.cli.common import JsonOption, console, fail, handles_errors, open_db, print_json, print_table, settings
from gatehouse.oversight.findings import Thresholds, as_csv, compute_findings
from gatehouse.oversight.inventory import COLUMNS
from gatehouse.oversight.inventory import inventory as build
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.policy.versions import active_compiled
from gatehouse.store.db import Database

CsvOption = typer.Option(False, "--csv", help="Print CSV (for spreadsheets and GRC tools).")


def active_policy(db: Database) -> tuple[CompiledPolicy | None, str | None]:
    """The version the store says is active (what every gateway worker enforces), or a note
    saying there is none yet. Never the policy file: a file on disk may not be what is applied."""
    policy = active_compiled(db)
    if policy is None:
        return None, "no policy version is active yet (start the gateway once): grant findings skipped"
    return policy, None


@handles_errors
def findings(
    unused_days: int = typer.Option(30, "--unused-days", min=1, help="Unused for this long counts as unused."),
    expiry_days: int = typer.Option(14, "--expiry-days", min=1, help="Flag keys expiring within this many days."),
    rotation_days: int = typer.Option(None, "--rotation-days", min=1,
                                      help="Flag keys older than this (default: GATEHOUSE_KEY_ROTATION_AGE, 90d)."),
    json: bool = JsonOption,
) -> None:
    """Unused identities, keys and grants; keys near expiry or past the rotation age; identities
    without a backup owner, orphaned, overdue for review or needing attention."""

    db = open_db()
    policy, note = active_policy(db)
    rotation = timedelta(days=rotation_days) if rotation_days else settings().key_rotation_age
    thresholds = Thresholds(timedelta(days=unused_days), timedelta(days=expiry_days), rotation)
    found = compute_findings(db, policy, thresholds)
    if json:
        print_json({"findings": [f.as_dict() for f in found], "note": note})
        return
    if note:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if not found:
        console.print("no findings")
        return
    print_table(f"Findings ({len(found)})", ["severity", "kind", "subject", "owner", "detail", "action"],
                [(f.severity, f.kind, f.subject, f.owner or "-", f.detail, f.action) for f in found])


@handles_errors
def inventory(json: bool = JsonOption, csv: bool = CsvOption) -> None:
    """Every identity and credential in the inference path, with its owner, grants and use."""

    if json and csv:
        fail("choose one of --json and --csv")
    db = open_db()
    policy, note = active_policy(db)
    rows = build(db, policy, settings())
    if json:
        print_json({"inventory": rows, "policy_version": policy.version if policy else None, "note": note})
    elif csv:
        print(as_csv(rows, COLUMNS), end="")
    else:
        if note:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
        print_table("Inventory", ["kind", "name", "owner", "backup", "env", "aliases", "last used", "expires", "status"],
                    [(r["kind"], r["name"], r["owner"] or "-", r["backup_owner"] or "-", r["environment"] or "-",
                      ",".join(r["aliases"] or []) or "-", r["last_used_at"] or "-", r["expires_at"] or "-",
                      r["status"]) for r in rows])
