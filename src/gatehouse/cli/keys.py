"""gatehouse key …"""

from __future__ import annotations

import typer

from gatehouse.cli.client import control_plane, quoted
from gatehouse.cli.common import (
    JsonOption,
    console,
    err_console,
    handles_errors,
    print_json,
    print_table,
    print_text,
    safe,
)

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
    issued = control_plane().post(f"/admin/identities/{quoted(identity)}/keys", {"ttl": ttl, "scopes": scope or None})
    if json:
        print_json(issued)
        return
    err_console.print(f"issued key [bold]{safe(issued['key_id'])}[/] for {safe(identity)}, expires {safe(issued['expires_at'])}"
                      + (f", scopes {safe(', '.join(issued['scopes']))}" if issued["scopes"] else ""))
    err_console.print("this is the only time the key is shown:", style="yellow")
    print(issued["key"])


@app.command("list")
@handles_errors
def list_(
    identity: str = typer.Option(None, "--identity", help="Only this identity's keys."),
    json: bool = JsonOption,
) -> None:
    """List keys (ids, never secrets)."""
    keys = control_plane().get("/admin/keys", identity=identity)["keys"]
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
    revoked = control_plane().post(f"/admin/keys/{quoted(key_id)}/revoke", {"reason": reason})
    if json:
        print_json({"key_id": revoked["key_id"], "status": revoked["status"]})
    else:
        console.print(f"revoked key [bold]{safe(revoked['key_id'])}[/]")


@app.command("rotate")
@handles_errors
def rotate(
    key_id: str = typer.Argument(..., help="Key id of the key to replace."),
    grace: str = typer.Option("24h", "--grace", help="How long the old key keeps working, e.g. 1h, 24h (0s: stop now; "
                                                     "at most 7d)."),
    ttl: str = typer.Option(None, "--ttl", help="Lifetime of the new key (default: the old key's lifetime)."),
    json: bool = JsonOption,
) -> None:
    """Issue a successor with the same identity and scopes; both work during the grace period."""
    rotation = control_plane().post(f"/admin/keys/{quoted(key_id)}/rotate", {"grace": grace, "ttl": ttl})
    if json:
        print_json({name: rotation[name] for name in ("old_key_id", "old_key_stops_at", "key_id", "expires_at", "key")})
        return
    who = f" for {rotation['identity']}" if rotation.get("identity") else ""
    err_console.print(f"rotated [bold]{safe(rotation['old_key_id'])}[/] → [bold]{safe(rotation['key_id'])}[/]{safe(who)}; "
                      f"the old key stops at {safe(rotation['old_key_stops_at'])}, the new one expires {safe(rotation['expires_at'])}")
    err_console.print("this is the only time the new key is shown:", style="yellow")
    print(rotation["key"])


@app.command("leaked")
@handles_errors
def leaked(
    key: str = typer.Argument(..., help="The leaked key (gth_…, checked by its checksum) or its key id."),
    source: str = typer.Option(None, "--source", help="Where it was seen, e.g. a URL."),
    json: bool = JsonOption,
) -> None:
    """Respond to a leak: revoke the key everywhere within a second, record the report, flag the
    identity for its owner and notify them (GATEHOUSE_NOTIFY_WEBHOOK)."""
    outcome = control_plane().post("/admin/keys/leaked", {"key": key, "source": source})
    if json:
        print_json(outcome)
        return
    state = "was already revoked; the report is recorded" if outcome["already_revoked"] else "is revoked"
    console.print(f"key [bold]{safe(outcome['key_id'])}[/] ({safe(outcome['identity'])}) {safe(state)}; owner {safe(outcome['owner'])} "
                  f"is asked to act; notification: {safe(outcome['notification'])}", highlight=False)


@app.command("report")
@handles_errors
def report(
    csv: bool = typer.Option(False, "--csv", help="Print CSV (for spreadsheets and GRC tools)."),
    json: bool = JsonOption,
) -> None:
    """The credential report: every key with its identity, owner, creation, last use, last model,
    expiry and status (like AWS IAM's credential report)."""

    if csv:
        print_text(control_plane().get("/admin/credential-report", format="csv"))
        return
    rows = control_plane().get("/admin/credential-report")["credentials"]
    if json:
        print_json(rows)
    else:
        print_table("Credential report", ["key id", "identity", "owner", "created", "last used", "last model",
                                          "expires", "status"],
                    [(r["key_id"], r["identity"], r["owner"], r["created_at"], r["last_used_at"] or "never",
                      r["last_model"] or "-", r["expires_at"], r["status"]) for r in rows])
