"""gatehouse findings, gatehouse inventory"""

from __future__ import annotations

from typing import Any

import typer

from gatehouse.cli.client import control_plane
from gatehouse.cli.common import JsonOption, console, fail, handles_errors, print_json, print_table, print_text, safe

CsvOption = typer.Option(False, "--csv", help="Print CSV (for spreadsheets and GRC tools).")


NO_VERSION = "no policy version is active yet (start the gateway once): grant findings skipped"


def _note(answer: dict[str, Any]) -> str | None:
    """Judged against the version the store says is active; none yet is worth saying."""
    return None if answer.get("policy_version") else NO_VERSION


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

    answer = control_plane().get("/admin/findings", unused_days=unused_days, expiry_days=expiry_days,
                                 rotation_days=rotation_days)
    found, note = answer["findings"], _note(answer)
    if json:
        print_json({"findings": found, "note": note, "policy_version": answer.get("policy_version")})
        return
    if note:
        console.print(f"[yellow]note:[/] {safe(note)}", highlight=False)
    if not found:
        console.print("no findings")
        return
    print_table(f"Findings ({len(found)})", ["severity", "kind", "subject", "owner", "detail", "action"],
                [(f["severity"], f["kind"], f["subject"], f["owner"] or "-", f["detail"], f["action"]) for f in found])


@handles_errors
def inventory(json: bool = JsonOption, csv: bool = CsvOption) -> None:
    """Every identity and credential in the inference path, with its owner, grants and use."""

    if json and csv:
        fail("choose one of --json and --csv")
    if csv:
        print_text(control_plane().get("/admin/inventory", format="csv"))
        return
    answer = control_plane().get("/admin/inventory")
    rows, note = answer["inventory"], _note(answer)
    if json:
        print_json({"inventory": rows, "policy_version": answer["policy_version"], "note": note})
    else:
        if note:
            console.print(f"[yellow]note:[/] {safe(note)}", highlight=False)
        print_table("Inventory", ["kind", "name", "owner", "backup", "env", "aliases", "last used", "expires", "status"],
                    [(r["kind"], r["name"], r["owner"] or "-", r["backup_owner"] or "-", r["environment"] or "-",
                      ",".join(r["aliases"] or []) or "-", r["last_used_at"] or "-", r["expires_at"] or "-",
                      r["status"]) for r in rows])
