"""gatehouse audit …"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gatehouse import audit as audit_log
from gatehouse.audit import checkpoints, witness_check
from gatehouse.audit.checkpoints import CadenceResult, CheckpointResult, load_public_key, verify_exported, verify_stored
from gatehouse.cli.client import control_plane
from gatehouse.cli.common import (
    JsonOption,
    console,
    err_console,
    handles_errors,
    print_json,
    print_table,
    print_text,
    safe,
    settings,
)
from gatehouse.core.config import Settings
from gatehouse.store.db import Database

DEFAULT_EVERY = Settings.audit_checkpoint_every  # the cadence an installation has unless it set another
app = typer.Typer(help="The hash-chained log of every control-plane change.", no_args_is_help=True)


@app.command("verify")
@handles_errors
def verify(
    public_key: str = typer.Option(None, "--public-key", help="PEM file of the audit public key (default: this "
                                                              "installation's key, if this machine holds it)."),
    checkpoint: str = typer.Option(None, "--checkpoint", help="A checkpoint exported with `audit checkpoint --export`."),
    witness_paths: list[str] = typer.Option(None, "--witness", help="A witness's checkpoints: a dir: witness's "
                                                                    "directory, or a JSON-lines file (repeatable)."),
    every: int = typer.Option(None, "--every", min=0, help="The checkpoint cadence to require (default: "
                                                           "GATEHOUSE_AUDIT_CHECKPOINT_EVERY; 0: none)."),
    cadence_from: int = typer.Option(None, "--cadence-from", min=1, max=2**63 - 1,
                                     help="Require the cadence only from the stored checkpoint at this size (e.g. "
                                          "where the cadence was changed; default: GATEHOUSE_AUDIT_CADENCE_FROM)."),
    json: bool = JsonOption,
) -> None:
    """Recompute the hash chain, check every signed checkpoint, that none the cadence requires
    is missing, an exported checkpoint and witnesses' copies; name the first entry that does
    not match. Exit status 2 when anything fails (a witness that lags is only a warning; one
    that cannot be read, holds something that is not a checkpoint, or holds nothing at all
    while the store holds checkpoints, fails).

    This one reads the store itself (GATEHOUSE_DATABASE_URL, or a copy of it): an auditor's
    check must not rest on the word of the server it checks. It changes nothing."""
    config = settings()
    key = _public_key(public_key, config)
    exported = _read_checkpoint(checkpoint) if checkpoint else None
    witnessed = {path: witness_check.read(Path(path)) for path in witness_paths or []}
    cadence_from = config.audit_cadence_from if cadence_from is None else cadence_from
    if (checkpoint or witnessed) and key is None:
        raise ValueError("checking a checkpoint needs the public key: --public-key FILE")
    store = config.database_url.removeprefix("sqlite:///")
    if config.database_url.startswith("sqlite:///") and not Path(store).exists():
        raise ValueError(f"there is no store at {store} to verify: set GATEHOUSE_DATABASE_URL to the store (or a copy)")
    db = Database(config.database_url)  # not open_db: reading never configures signing, nor creates a key
    try:
        with db.read() as session:
            chain = audit_log.verify(session)
            stored = verify_stored(session, key) if key is not None else None
            cadence = checkpoints.verify_cadence(session, config.audit_checkpoint_every if every is None else every,
                                                 chain.entries, cadence_from)
            outside = verify_exported(session, key, exported) if checkpoint and key is not None else None
            witnesses = [witness_check.check(session, key, path, items) for path, items in witnessed.items()
                         if key is not None]
    finally:
        db.dispose()
    problems = [(chain.first_bad_seq, chain.problem)] if not chain.ok else []
    for result in (stored, cadence, outside, *witnesses):
        if result is not None and not result.ok:
            problems.append((result.first_bad_seq, result.problem))
    warnings = _warnings(cadence, witnesses, chain.entries, config.audit_checkpoint_every)
    ok = not problems
    if json:
        print_json({"ok": ok, "entries": chain.entries, "head": chain.head_hash,
                    "checkpoints_verified": stored.checked if stored else None,
                    "cadence": {"every": cadence.every, "from": cadence.start, "required": cadence.required,
                                "missing": list(cadence.missing), "legacy_gaps": cadence.legacy_gaps},
                    "exported_checkpoint_ok": outside.ok if outside else None,
                    "witnesses": [result.as_dict() for result in witnesses],
                    "first_bad_entry": problems[0][0] if problems else None,
                    "problems": [problem for _, problem in problems], "warnings": warnings})
    else:
        if ok:
            console.print(f"[green]ok[/] — {chain.entries} entries, head {chain.head_hash}"
                          f"{_summary(stored, cadence, outside, witnesses)}", highlight=False)
        for seq, problem in problems:
            where = f" at entry {seq}" if seq is not None else ""
            err_console.print(f"[bold red]BROKEN[/]{where}: {safe(problem)}", highlight=False)
        for warning in warnings:
            err_console.print(f"[bold yellow]warning:[/] {safe(warning)}", highlight=False)
    if not ok:
        raise typer.Exit(2)


def _public_key(path: str | None, config: Settings) -> Ed25519PublicKey | None:
    if path:
        try:
            return load_public_key(Path(path))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the public key {path}: {exc}") from None
    signing = checkpoints.signing_key(config)
    return signing.public_key() if signing is not None else None


def _read_checkpoint(path: str) -> Any:
    try:
        return witness_check.read_exported(Path(path))
    except ValueError as exc:
        raise ValueError(f"the checkpoint {path} {exc}") from None


def _summary(stored: CheckpointResult | None, cadence: CadenceResult, outside: CheckpointResult | None,
             witnesses: list[witness_check.WitnessCheck]) -> str:
    parts = [f"{stored.checked} signed checkpoints" if stored else "checkpoints not checked (no public key)"]
    if outside:
        parts.append("exported checkpoint matches")
    if cadence.every > 0 and cadence.required:
        parts.append(f"cadence met (every {cadence.every}: {cadence.required} due from {cadence.start} entries on)")
    elif cadence.every > 0:
        parts.append(f"no cadence checkpoint due yet (every {cadence.every})")
    parts.extend(f"witness {result.witness}: {result.verified} checkpoints match" for result in witnesses)
    return "".join(f", {part}" for part in parts)


def _warnings(cadence: CadenceResult, witnesses: list[witness_check.WitnessCheck], entries: int,
              configured: int) -> list[str]:
    warnings = []
    used = min(every for every in (configured, DEFAULT_EVERY) if every > 0)
    if cadence.every > 0 and not cadence.required and cadence.stored == 0 and entries > 0:
        hint = (f", but {entries // used} would be every {used} (this machine's GATEHOUSE_AUDIT_CHECKPOINT_EVERY or "
                "the default)" if cadence.every > used and entries >= used else "")
        warnings.append(f"the store holds no signed checkpoint at all, though it has {entries} entries: none is due "
                        f"every {cadence.every}{hint}; only the hash chain vouches for them: verify with --every set "
                        "to the cadence the installation used, or its checkpoints may have been deleted unseen")
    if cadence.every <= 0:
        warnings.append("no checkpoint cadence is required (--every 0): a rewrite whose checkpoints were deleted "
                        "is caught only by an exported checkpoint or a witness")
    elif cadence.legacy_gaps:
        warnings.append(f"{cadence.legacy_gaps} cadence point(s) before {cadence.start} entries have no checkpoint "
                        f"(entries appended before every process signed); the cadence is checked from "
                        f"{cadence.start}, whose signed checkpoint covers every entry before it")
    for result in witnesses:
        if result.lag:
            warnings.append(f"witness {result.witness} lags: it lacks {result.lag} of the store's checkpoints "
                            f"(the newest it holds: {result.newest if result.newest is not None else 'none'}); "
                            "entries since are not witnessed")
    return warnings


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
                      + (f"; written to {safe(export)}" if export else ""), highlight=False)


@app.command("public-key")
@handles_errors
def public_key() -> None:
    """Print the audit public key (PEM), for verifying the log and its checkpoints elsewhere."""
    print_text(control_plane().get("/admin/audit/public-key")["public_key"])


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
