"""gatehouse audit …"""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from gatehouse import audit as audit_log
from gatehouse.audit import checkpoints
from gatehouse.audit.checkpoints import load_public_key, verify_exported, verify_stored
from gatehouse.cli.client import control_plane
from gatehouse.cli.common import (
    JsonOption,
    console,
    err_console,
    handles_errors,
    open_db,
    print_json,
    print_table,
    settings,
)

app = typer.Typer(help="The hash-chained log of every control-plane change.", no_args_is_help=True)


@app.command("verify")
@handles_errors
def verify(
    public_key: str = typer.Option(None, "--public-key", help="PEM file of the audit public key (default: this "
                                                              "installation's key, if this machine holds it)."),
    checkpoint: str = typer.Option(None, "--checkpoint", help="A checkpoint exported with `audit checkpoint --export`."),
    json: bool = JsonOption,
) -> None:
    """Recompute the hash chain, check every signed checkpoint (and an exported one), and name
    the first entry that does not match. Exit status 2 when anything fails.

    This one reads the store itself (GATEHOUSE_DATABASE_URL, or a copy of it): an auditor's
    check must not rest on the word of the server it checks. It changes nothing."""
    key = None
    if public_key:
        try:
            key = load_public_key(Path(public_key))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the public key {public_key}: {exc}") from None
    else:
        signing = checkpoints.signing_key(settings())
        key = signing.public_key() if signing is not None else None
    exported = None
    if checkpoint:
        try:
            exported = orjson.loads(Path(checkpoint).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"cannot read the checkpoint {checkpoint}: {exc}") from None
        if key is None:
            raise ValueError("checking a checkpoint needs the public key: --public-key FILE")
    config = settings()
    store = config.database_url.removeprefix("sqlite:///")
    if config.database_url.startswith("sqlite:///") and not Path(store).exists():
        raise ValueError(f"there is no store at {store} to verify: set GATEHOUSE_DATABASE_URL to the store (or a copy)")
    db = open_db(upgrade=False)
    with db.read() as session:
        chain = audit_log.verify(session)
        stored = verify_stored(session, key) if key is not None else None
        outside = verify_exported(session, key, exported) if exported is not None and key is not None else None
    problems = [(chain.first_bad_seq, chain.problem)] if not chain.ok else []
    for result in (stored, outside):
        if result is not None and not result.ok:
            problems.append((result.first_bad_seq, result.problem))
    ok = not problems
    if json:
        print_json({"ok": ok, "entries": chain.entries, "head": chain.head_hash,
                    "checkpoints_verified": stored.checked if stored else None,
                    "exported_checkpoint_ok": outside.ok if outside else None,
                    "first_bad_entry": problems[0][0] if problems else None,
                    "problems": [problem for _, problem in problems]})
    elif ok:
        signed = f", {stored.checked} signed checkpoints" if stored else ", checkpoints not checked (no public key)"
        extra = ", exported checkpoint matches" if outside else ""
        console.print(f"[green]ok[/] — {chain.entries} entries, head {chain.head_hash}{signed}{extra}", highlight=False)
    else:
        for seq, problem in problems:
            err_console.print(f"[bold red]BROKEN[/] at entry {seq}: {problem}", highlight=False)
    if not ok:
        raise typer.Exit(2)


@app.command("checkpoint")
@handles_errors
def checkpoint(export: str = typer.Option(None, "--export", help="Also write the latest checkpoint to this file "
                                                                  "(keep it somewhere the database's admins cannot write)."),
               json: bool = JsonOption) -> None:
    """Sign the log's current head now (the gateway also does it every few minutes and every N entries)."""
    exported = control_plane().post("/admin/audit/checkpoint")
    if export:
        Path(export).write_bytes(orjson.dumps(exported, option=orjson.OPT_INDENT_2))
    if json:
        print_json(exported)
    else:
        console.print(f"checkpoint: {exported['size']} entries, head {exported['head']}, key {exported['key_id']}"
                      + (f"; written to {export}" if export else ""), highlight=False)


@app.command("public-key")
@handles_errors
def public_key() -> None:
    """Print the audit public key (PEM), for verifying the log and its checkpoints elsewhere."""
    print(control_plane().get("/admin/audit/public-key")["public_key"], end="")


@app.command("log")
@handles_errors
def log(limit: int = typer.Option(50, "--limit", min=1, help="How many of the newest entries."),
        json: bool = JsonOption) -> None:
    """Show the newest entries."""
    entries = control_plane().get("/admin/audit", limit=limit)["entries"]
    if json:
        print_json(entries)
    else:
        print_table("Audit log", ["#", "time", "actor", "action", "target"],
                    [(e["seq"], e["ts"], e["actor"], e["action"], e["target"]) for e in entries])
