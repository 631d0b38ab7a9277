"""gatehouse key …"""

from __future__ import annotations

import typer

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
from gatehouse.config import local_actor
from gatehouse.durations import parse_duration
from gatehouse.identity import service

app = typer.Typer(help="API keys of workload identities (gth_…). A key is shown once, when issued.",
                  no_args_is_help=True)


@app.command("issue")
@handles_errors
def issue(
    identity: str = typer.Argument(..., help="Identity the key authenticates."),
    ttl: str = typer.Option("30d", "--ttl", help="Lifetime, e.g. 12h, 30d, 1w; at most GATEHOUSE_MAX_KEY_TTL (90d)."),
    scope: list[str] = typer.Option(None, "--scope", help="Narrow the key to this model alias; repeat for more."),
    json: bool = JsonOption,
) -> None:
    """Issue a key. The key is printed once and never stored: copy it now."""
    config = settings()
    credential, key_text = service.issue_key(
        open_db(), local_actor(), identity, pepper=config.pepper(), ttl=parse_duration(ttl),
        max_ttl=config.max_key_ttl, scopes=scope or None,
    )
    summary = service.key_summary(credential, identity)
    if json:
        print_json({**summary, "key": key_text})
        return
    err_console.print(f"issued key [bold]{credential.id}[/] for {identity}, expires {summary['expires_at']}"
                      + (f", scopes {', '.join(credential.scopes)}" if credential.scopes else ""))
    err_console.print("this is the only time the key is shown:", style="yellow")
    print(key_text)


@app.command("list")
@handles_errors
def list_(
    identity: str = typer.Option(None, "--identity", help="Only this identity's keys."),
    json: bool = JsonOption,
) -> None:
    """List keys (ids, never secrets)."""
    keys = service.list_keys(open_db(), identity)
    if json:
        print_json(keys)
    else:
        print_table("Keys", ["key id", "identity", "status", "scopes", "expires", "last used"],
                    [(k["key_id"], k["identity"], k["status"], ",".join(k["scopes"] or []) or "(all granted)",
                      k["expires_at"], k["last_used_at"] or "never") for k in keys])


@app.command("revoke")
@handles_errors
def revoke(
    key_id: str = typer.Argument(..., help="Key id: the 12 characters after 'gth_'."),
    reason: str = typer.Option(None, "--reason", help="Why; recorded in the audit log."),
    json: bool = JsonOption,
) -> None:
    """Revoke a key: refused by every gateway worker within a second."""
    credential = service.revoke_key(open_db(), local_actor(), key_id, reason)
    if json:
        print_json({"key_id": credential.id, "status": credential.status})
    else:
        console.print(f"revoked key [bold]{credential.id}[/]")
