"""gatehouse policy …: validate and show files; propose, plan, approve, apply, roll back."""

from __future__ import annotations

import difflib
import sys
import time
from pathlib import Path

import typer

from gatehouse.cli.common import (
    JsonOption,
    console,
    err_console,
    fail,
    handles_errors,
    local_actor,
    open_db,
    print_json,
    print_table,
    settings,
)
from gatehouse.core.durations import parse_duration
from gatehouse.core.webhook import notify
from gatehouse.identity.view import identity_views
from gatehouse.policy import change_control, planning, versions
from gatehouse.policy import views as policy_views
from gatehouse.policy import workers as policy_workers
from gatehouse.policy.access import subject_text
from gatehouse.policy.loader import LoadedPolicy, load_policy
from gatehouse.policy.planning import PlannedChange

app = typer.Typer(help="Policy: deployments, model aliases with their routes, and grants; and how it changes "
                       "(propose → plan → approve → apply).", no_args_is_help=True)

PolicyArgument = typer.Argument(None, help="Policy file (default: $GATEHOUSE_HOME/policy.yaml).")
MessageOption = typer.Option(..., "-m", "--message", help="Why (kept with the version and in the audit log).")
WaitOption = typer.Option(10.0, "--wait", help="Seconds to wait for every running gateway worker to enforce it "
                                               "(0: do not wait).", min=0)


def _loaded(ref: str) -> LoadedPolicy:
    """A policy file, or a stored version by its hash (prefix)."""
    if Path(ref).expanduser().is_file():
        return load_policy(Path(ref).expanduser())

    with open_db().read() as session:
        return versions.loaded_version(versions.find_version(session, ref))


@app.command("validate")
@handles_errors
def validate(path: Path = PolicyArgument, json: bool = JsonOption) -> None:
    """Check a policy file; every problem is reported with its line number."""
    loaded = load_policy(path or settings().policy_path)
    if json:
        print_json({"valid": True, "version": loaded.version})
    else:
        console.print(f"[green]valid[/] — version {loaded.version}")


def _show_document(loaded: LoadedPolicy) -> None:
    document = loaded.document
    print_table("Deployments", ["name", "engine", "model", "url", "location", "data classes"],
                [(name, d.engine, d.model, d.url or "(in process)", d.location, ", ".join(d.data_classes))
                 for name, d in document.deployments.items()])
    print_table("Aliases", ["alias", "route (primary → fallbacks)", "description"],
                [(name, " → ".join(a.route), a.description) for name, a in document.aliases.items()])

    print_table("Grants", ["grant", "who", "aliases", "max data class"],
                [(g.name, " | ".join(subject_text(s) for s in g.subjects), ", ".join(g.aliases), g.max_data_class)
                 for g in document.grants])


@app.command("show")
@handles_errors
def show(ref: str = typer.Argument(None, help="A policy file or a stored version (hash prefix); default: "
                                               "$GATEHOUSE_HOME/policy.yaml."),
         json: bool = JsonOption) -> None:
    """Show what a policy routes and grants; for a stored version also its author, message,
    approvals and activations."""
    ref = ref or str(settings().policy_path)
    if Path(ref).expanduser().is_file():
        loaded = load_policy(Path(ref).expanduser())
        if json:
            print_json({"version": loaded.version, "document": loaded.document.model_dump(mode="json")})
            return
        console.print(f"policy version [bold]{loaded.version}[/]")
        _show_document(loaded)
        return

    info = policy_views.describe_version(open_db(), ref)
    if json:
        print_json(info)
        return
    console.print(f"policy version [bold]{info['version']}[/] — {info['state']}", highlight=False)
    console.print(f"proposed by {info['author']} at {info['created_at']:%Y-%m-%d %H:%M} UTC: {info['message'] or ''}",
                  highlight=False, markup=False)
    _show_document(_loaded(info["version"]))
    if info["approvals"]:
        print_table("Approvals", ["approver", "plan", "against", "widenings acknowledged", "counts now"],
                    [(a["approver"], a["plan_id"], (a["base_version"] or "-")[:19], len(a["acknowledged"]),
                      "yes" if a["counts"] else "no (other baseline or role)") for a in info["approvals"]])
    if info["activations"]:
        print_table("Activations", ["#", "kind", "by", "at", "reason"],
                    [(a["seq"], a["kind"], a["actor"], f"{a['at']:%Y-%m-%d %H:%M:%S}", a["reason"] or "")
                     for a in info["activations"]])


@app.command("propose")
@handles_errors
def propose(path: Path = typer.Argument(..., help="The policy file to propose."), message: str = MessageOption,
            json: bool = JsonOption) -> None:
    """Store an immutable, content-hashed draft of a policy file with you as its author
    (policy-admin; GATEHOUSE_ACTOR names you)."""

    loaded = load_policy(path)
    row, created = change_control.propose(open_db(), local_actor(), loaded, message)
    if json:
        print_json({"version": row.hash, "state": row.state, "created": created})
        return
    if created:
        console.print(f"proposed [bold]{row.hash}[/] (draft)", highlight=False)
    else:
        console.print(f"already stored as [bold]{row.hash}[/] ({row.state}, by {row.created_by})", highlight=False)
    console.print(f"next: [cyan]gatehouse policy plan {row.hash[:19]}[/]", highlight=False)


@app.command("list")
@handles_errors
def list_versions(json: bool = JsonOption) -> None:
    """Every stored version, newest first, with the approvals that count against the active version."""

    rows = policy_views.version_rows(open_db())
    if json:
        print_json(rows)
        return
    print_table("Policy versions", ["version", "state", "author", "created", "approvals", "message"],
                [(r["version"][:19], r["state"], r["author"], f"{r['created_at']:%Y-%m-%d %H:%M}",
                  ", ".join(r["approvals"]) or "-", r["message"] or "") for r in rows])


ACCESS_ROWS_SHOWN = 200


def _print_plan(planned: PlannedChange, title: str) -> None:
    result = planned.plan
    console.print(title, highlight=False)
    if not result.widenings:
        console.print("[green]no new access[/]: no identity, rule or deployment gains anything", highlight=False)
    if result.access:
        shown = result.access[:ACCESS_ROWS_SHOWN]
        print_table(f"Access (identities that exist now): {len(result.gained):,} gain(s), {len(result.lost):,} loss(es)",
                    ["identity", "alias", "before", "after", ""],
                    [(c.identity, c.alias, c.before or "-", c.after or "-", "GAINS" if c.widens else "loses")
                     for c in shown])
        if len(result.access) > len(shown):
            console.print(f"… and {len(result.access) - len(shown):,} more access changes (--json lists them all)")
    if result.rules:
        print_table("Grant rules (also identities to come)", ["who", "alias", "data class", "change"],
                    [(r.who, r.alias, r.data_class, r.change) for r in result.rules])
    if result.flows:
        print_table("Data flows", ["deployment", "data class", "change", "location", "allowed by the deployment"],
                    [(f.deployment, f.data_class, f.change, f.location, "yes" if f.allowed else "NO")
                     for f in result.flows])
    if result.routes:
        print_table("Routes", ["alias", "before", "after", "change"],
                    [(r.alias, " → ".join(r.before or ()) or "-", " → ".join(r.after or ()) or "-", r.description)
                     for r in result.routes])
    if result.deployments:
        print_table("Deployments", ["deployment", "change", "widens"],
                    [(d.deployment, ("added: " if d.added else "") + d.description, "yes" if d.widens else "no")
                     for d in result.deployments])
    for title, changes in (("Guardrails", result.guardrails), ("Monitoring", result.monitoring)):
        if changes:
            print_table(title, ["what", "before", "after", "loosens"],
                        [(g.subject, g.before, g.after, "YES" if g.loosens else "no") for g in changes])
    if result.approvers is not None:
        console.print(f"change control: approvals a change needs go from {result.approvers[0]} to {result.approvers[1]}",
                      highlight=False)
    if planned.widening_ids:
        print_table("Widenings an approver must acknowledge", ["id", "change"], planned.widening_ids.items())
    if result.violations:
        console.print(f"[bold red]{len(result.violations)} flow(s) to a deployment not allowed to receive that data[/]")


@app.command("plan")
@handles_errors
def plan_command(
    candidate: str = typer.Argument(..., help="A stored version (hash prefix) or a policy file."),
    against: Path = typer.Option(None, "--against", help="Compare with this policy file instead of the active version."),
    json: bool = JsonOption,
) -> None:
    """What replacing the active policy with CANDIDATE would do, over the real inventory: who gains
    or loses which model at which data class (now, and by rule for identities to come), which
    deployments start or stop receiving which data classes, and how routes change. The plan id
    printed is what `policy approve --plan` needs."""

    db = open_db()
    if against is not None:
        before = load_policy(against)
        planned = planning.compute_plan(before.document, _loaded(candidate), before.version, identity_views(db))
    elif Path(candidate).expanduser().is_file():
        planned = planning.plan_document(db, _loaded(candidate))
    else:
        planned = planning.plan_version(db, candidate)
    if json:
        print_json(planned.as_dict())
        return
    base = planned.base[:19] if planned.base else "(no active version)"
    _print_plan(planned, f"plan [bold]{planned.plan_id}[/]: {base} → {planned.version[:19]} "
                         f"over {planned.identities} identities")


@app.command("diff")
@handles_errors
def diff(a: str = typer.Argument(..., help="A stored version or a policy file."),
         b: str = typer.Argument(..., help="Another one."), json: bool = JsonOption) -> None:
    """Compare two versions: the text, and what moving from A to B changes over the inventory."""

    before, after = _loaded(a), _loaded(b)
    planned = planning.compute_plan(before.document, after, before.version, identity_views(open_db()))
    lines = list(difflib.unified_diff(before.text.splitlines(), after.text.splitlines(),
                                      before.short_version, after.short_version, lineterm=""))
    if json:
        print_json({"text_diff": lines, **planned.as_dict()})
        return
    for line in lines:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        console.print(line, style=style, highlight=False, markup=False)
    _print_plan(planned, f"\n{before.short_version} → {after.short_version} over {planned.identities} identities")


def _acknowledgements(planned: PlannedChange, ack: list[str], ack_file: Path | None) -> list[str]:
    chosen = list(ack)
    if ack_file is not None:
        try:
            chosen += [line.split()[0] for line in ack_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            fail(f"cannot read {ack_file}: {exc.strerror}")
    if chosen or not planned.widening_ids or not sys.stdin.isatty():
        return chosen
    for key, text in planned.widening_ids.items():  # at a terminal: one question per widening
        if typer.confirm(f"{key}: {text} — acknowledge?", default=False):
            chosen.append(key)
    return chosen


@app.command("approve")
@handles_errors
def approve(
    version: str = typer.Argument(..., help="The stored version (hash prefix)."),
    plan_id: str = typer.Option(..., "--plan", help="The plan id `gatehouse policy plan VERSION` printed."),
    ack: list[str] = typer.Option([], "--ack", help="A widening id you checked and accept (repeat for each)."),
    ack_file: Path = typer.Option(None, "--ack-file", help="A file with one widening id per line."),
    note: str = typer.Option(None, "-m", "--message", help="A note kept with the approval."),
    json: bool = JsonOption,
) -> None:
    """Approve VERSION over the plan you reviewed (approver role, not its author). Every
    widening must be acknowledged by id; a plan that no longer matches the store is refused."""

    db = open_db()
    planned = planning.plan_version(db, version)
    approval = change_control.approve(db, local_actor(), version, plan_id, _acknowledgements(planned, ack, ack_file), note)
    if json:
        print_json({"version": approval.version, "plan_id": approval.plan_id, "approver": approval.approver,
                    "acknowledged": approval.acknowledged})
        return
    console.print(f"[green]approved[/] {approval.version[:19]} over {approval.plan_id} "
                  f"({len(approval.acknowledged)} widening(s) acknowledged)", highlight=False)


@app.command("reject")
@handles_errors
def reject(version: str = typer.Argument(..., help="The stored version (hash prefix)."),
           message: str = MessageOption) -> None:
    """Reject a draft (an approver, or its author withdrawing it)."""

    row = change_control.reject(open_db(), local_actor(), version, message)
    console.print(f"rejected {row.hash[:19]}", highlight=False)


def _wait_for_workers(version: str, seconds: float) -> None:

    if seconds <= 0:
        return
    started = time.monotonic()
    db = open_db()
    while True:
        state = policy_workers.status(db)
        live = [w for w in state["workers"] if w["state"] != "gone"]
        behind = [w for w in live if w["policy_version"] != version]
        if not live:
            console.print("no gateway worker is running: the next one to start enforces it")
            return
        if not behind:
            console.print(f"enforced by {len(live)} worker(s) after {time.monotonic() - started:.2f} s")
            return
        if time.monotonic() - started > seconds:
            problems = "; ".join(f"{w['worker']}: {w['problem'] or w['policy_version']}" for w in behind)
            fail(f"{len(behind)} of {len(live)} worker(s) do not enforce it yet: {problems} "
                 "(see `gatehouse policy status`)", code=3)
        time.sleep(0.02)


@app.command("apply")
@handles_errors
def apply(version: str = typer.Argument(..., help="The approved version (hash prefix)."),
          wait: float = WaitOption) -> None:
    """Activate an approved version on every gateway worker; requests in flight finish on the
    version they started with (policy-admin)."""

    activation = change_control.apply(open_db(), local_actor(), version)
    console.print(f"[green]applied[/] {activation.version} (activation #{activation.seq})", highlight=False)
    _wait_for_workers(activation.version, wait)


@app.command("rollback")
@handles_errors
def rollback(message: str = MessageOption, wait: float = WaitOption) -> None:
    """Go back to the version active before the current one (recorded; approval needed only if
    that version gives access the current one does not)."""

    activation = change_control.rollback(open_db(), local_actor(), message)
    console.print(f"[green]rolled back[/] to {activation.version} (activation #{activation.seq})", highlight=False)
    _wait_for_workers(activation.version, wait)


@app.command("break-glass")
@handles_errors
def break_glass(
    ref: str = typer.Argument(..., help="A policy file or a stored version."),
    reason: str = typer.Option(..., "--reason", help="The emergency: kept in the audit log and sent to the webhook."),
    ttl: str = typer.Option("1h", "--ttl", help="How long it lasts (at most 4h); then the approved version returns."),
    wait: float = WaitOption,
) -> None:
    """Emergency: activate a policy now, without approval (policy-admin). Loud in the audit log
    and the webhook, and short-lived: when it expires every worker returns to the approved
    version. To keep the change, propose and approve it."""

    config = settings()
    activation, planned = change_control.break_glass(open_db(), local_actor(), _loaded(ref), reason, parse_duration(ttl))
    err_console.print(f"[bold red]BREAK-GLASS[/] {activation.version} active until {activation.expires_at:%Y-%m-%d %H:%M:%S} "
                      f"UTC ({len(planned.widening_ids)} widening(s) unreviewed); recorded in the audit log",
                      highlight=False)
    outcome = notify(config.notify_webhook, change_control.break_glass_event(activation, planned))
    if outcome.startswith("failed"):
        err_console.print(f"webhook: {outcome}", highlight=False)
    _wait_for_workers(activation.version, wait)


@app.command("status")
@handles_errors
def status(json: bool = JsonOption) -> None:
    """The active version and what each gateway worker enforces. Exits 3 on drift."""

    db = open_db()
    change_control.expire_break_glass(db)  # even with no gateway running to notice
    state = policy_workers.status(db)
    if json:
        print_json(state)
    else:
        activation = state["activation"]
        if activation is None:
            console.print("no policy version is active yet (start the gateway once)")
        else:
            console.print(f"active [bold]{state['active']}[/] ({activation['kind']} by {activation['actor']} at "
                          f"{activation['at']:%Y-%m-%d %H:%M:%S} UTC)", highlight=False)
            if state["break_glass"]:
                console.print(f"[bold red]BREAK-GLASS until {activation['expires_at']:%Y-%m-%d %H:%M:%S} UTC[/]; "
                              f"returns to {state['baseline']}", highlight=False)
        print_table("Gateway workers", ["worker", "enforces", "state", "seen", "problem"],
                    [(w["worker"], (w["policy_version"] or "-")[:19], w["state"].upper() if w["state"] != "in sync"
                      else w["state"], f"{w['seen_seconds_ago']} s ago", w["problem"] or "") for w in state["workers"]])
        print_table("Recent activations", ["#", "version", "kind", "by", "at", "reason"],
                    [(a["seq"], a["version"][:19], a["kind"], a["actor"], f"{a['at']:%Y-%m-%d %H:%M:%S}", a["reason"] or "")
                     for a in state["history"]])
    if state["drift"]:
        raise typer.Exit(3)
