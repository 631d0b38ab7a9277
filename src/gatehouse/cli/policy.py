"""gatehouse policy …: validate and show files; propose, plan, approve, apply, roll back.

Files are read here; everything about stored versions, plans over the inventory and the
active version goes through the admin API as the signed-in person."""

from __future__ import annotations

import difflib
import time
from pathlib import Path
from typing import Any

import typer

from gatehouse.cli.client import control_plane, quoted
from gatehouse.cli.common import (
    JsonOption,
    at_terminal,
    console,
    err_console,
    fail,
    handles_errors,
    print_json,
    print_table,
    safe,
    settings,
    warn_hidden,
)
from gatehouse.core.display import shown
from gatehouse.engines.base import ENDPOINTS
from gatehouse.policy.access import subject_text
from gatehouse.policy.loader import LoadedPolicy, load_policy, load_policy_text

app = typer.Typer(help="Policy: deployments, model aliases with their routes, and grants; and how it changes "
                       "(propose → plan → approve → apply).", no_args_is_help=True)

PolicyArgument = typer.Argument(None, help="Policy file (default: $GATEHOUSE_HOME/policy.yaml).")
MessageOption = typer.Option(..., "-m", "--message", help="Why (kept with the version and in the audit log).")
WaitOption = typer.Option(10.0, "--wait", help="Seconds to wait for every running gateway worker to enforce it "
                                               "(0: do not wait).", min=0)


def _is_file(ref: str) -> bool:
    return Path(ref).expanduser().is_file()


def _loaded(ref: str) -> LoadedPolicy:
    """A policy file, or a stored version by its hash (prefix), read through the API."""
    if _is_file(ref):
        return load_policy(Path(ref).expanduser())
    info = control_plane().get(f"/admin/policy/versions/{quoted(ref)}")
    return load_policy_text(info["source"], f"<policy {info['version'][:19]}>")


def _when(value: str | None) -> str:
    """An ISO timestamp from the API, to the minute or second shown in tables."""
    return (value or "-").replace("T", " ")[:19]


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
    if _is_file(ref):
        loaded = load_policy(Path(ref).expanduser())
        if json:
            print_json({"version": loaded.version, "document": loaded.document.model_dump(mode="json")})
            return
        console.print(f"policy version [bold]{loaded.version}[/]")
        _show_document(loaded)
        warn_hidden(loaded.document.model_dump(mode="json"), "this policy")
        return
    info = control_plane().get(f"/admin/policy/versions/{quoted(ref)}")
    if json:
        print_json(info)
        return
    console.print(f"policy version [bold]{safe(info['version'])}[/] — {safe(info['state'])}", highlight=False)
    console.print(f"proposed by {shown(info['author'])} at {_when(info['created_at'])[:16]} UTC: "
                  f"{shown(info['message'] or '')}", highlight=False, markup=False)
    _show_document(load_policy_text(info["source"], f"<policy {info['version'][:19]}>"))
    if info["approvals"]:
        print_table("Approvals", ["approver", "plan", "against", "widenings acknowledged", "counts now"],
                    [(a["approver"], a["plan_id"], (a["base_version"] or "-")[:19], len(a["acknowledged"]),
                      "yes" if a["counts"] else "no (other baseline, or the approver's role ended since)")
                     for a in info["approvals"]])
    if info["activations"]:
        print_table("Activations", ["#", "kind", "by", "at", "reason"],
                    [(a["seq"], a["kind"], a["actor"], _when(a["at"]), a["reason"] or "") for a in info["activations"]])
    warn_hidden({key: value for key, value in info.items() if key != "source"}, "this version")


@app.command("propose")
@handles_errors
def propose(path: Path = typer.Argument(..., help="The policy file to propose."), message: str = MessageOption,
            json: bool = JsonOption) -> None:
    """Store an immutable, content-hashed draft of a policy file with you as its author (policy-admin)."""
    loaded = load_policy(path)  # problems with their line numbers, before anything is sent
    row = control_plane().post("/admin/policy/versions", {"source": loaded.text, "message": message})
    if json:
        print_json(row)
        return
    if row["created"]:
        console.print(f"proposed [bold]{row['version']}[/] (draft)", highlight=False)
    else:
        console.print(f"already stored as [bold]{row['version']}[/] ({row['state']})", highlight=False)
    console.print(f"next: [cyan]gatehouse policy plan {row['version'][:19]}[/]", highlight=False)


@app.command("list")
@handles_errors
def list_versions(json: bool = JsonOption) -> None:
    """Every stored version, newest first, with the approvals that count against the active version."""
    rows = control_plane().get("/admin/policy/versions")["versions"]
    if json:
        print_json(rows)
        return
    print_table("Policy versions", ["version", "state", "author", "created", "approvals", "message"],
                [(r["version"][:19], r["state"], r["author"], _when(r["created_at"])[:16],
                  ", ".join(r["approvals"]) or "-", r["message"] or "") for r in rows])
    warn_hidden(rows, "a stored version")


ACCESS_ROWS_SHOWN = 200


def _print_plan(planned: dict[str, Any], title: str) -> None:
    console.print(title, highlight=False)
    if not planned["widenings"]:
        console.print("[green]no new access[/]: no identity, rule or deployment gains anything", highlight=False)
    access = planned["access"]
    if access:
        gains = sum(1 for c in access if c["widens"])
        listed = access[:ACCESS_ROWS_SHOWN]
        print_table(f"Access (identities that exist now): {gains:,} gain(s), {len(access) - gains:,} loss(es)",
                    ["identity", "alias", "before", "after", ""],
                    [(c["identity"], c["alias"], c["before"] or "-", c["after"] or "-", "GAINS" if c["widens"] else "loses")
                     for c in listed])
        if len(access) > len(listed):
            console.print(f"… and {len(access) - len(listed):,} more access changes (--json lists them all)")
    if planned["rules"]:
        print_table("Grant rules (also identities to come)", ["who", "alias", "data class", "change"],
                    [(r["who"], r["alias"], r["data_class"], r["change"]) for r in planned["rules"]])
    if planned["flows"]:
        print_table("Data flows", ["deployment", "data class", "change", "location", "allowed by the deployment"],
                    [(f["deployment"], f["data_class"], f["change"], f["location"], "yes" if f["allowed"] else "NO")
                     for f in planned["flows"]])
    if planned["routes"]:
        print_table("Routes", ["alias", "before", "after", "change"],
                    [(r["alias"], " → ".join(r["before"] or ()) or "-", " → ".join(r["after"] or ()) or "-",
                      r["description"]) for r in planned["routes"]])
    if planned.get("shares"):
        print_table("Who answers first (per alias and data class; each next one only when those before it fail)",
                    ["alias", "data classes", "before", "after", "now earlier or new"],
                    [(s["alias"] + ("" if len(s["endpoints"]) == len(ENDPOINTS) else f" ({', '.join(s['endpoints'])})"),
                      ", ".join(s["data_classes"]), _order(s["before"]), _order(s["after"]),
                      ", ".join(s["promoted"]) or "-") for s in planned["shares"]])
    if planned.get("failover"):
        print_table("Failover: changes that can hand requests on to the next deployment",
                    ["deployment", "change", "alias", "can push traffic to"],
                    [(f"{f['deployment']} ({f['location']})", "; ".join(f"{k} {a} → {b}" for k, a, b in f["fields"]),
                      f["alias"], ", ".join(f"{o['deployment']} ({o['location']}: {', '.join(o['data_classes'])})"
                                            for o in f["onto"])) for f in planned["failover"]])
    if planned["deployments"]:
        print_table("Deployments", ["deployment", "change", "widens"],
                    [(d["deployment"], ("added: " if d["added"] else "") + d["description"], "yes" if d["widens"] else "no")
                     for d in planned["deployments"]])
    for name, key in (("Guardrails", "guardrails"), ("Monitoring", "monitoring")):
        if planned[key]:
            print_table(name, ["what", "before", "after", "loosens"],
                        [(g["subject"], g["before"], g["after"], "YES" if g["loosens"] else "no") for g in planned[key]])
    if planned["approvers"] is not None:
        console.print(f"change control: approvals a change needs go from {planned['approvers'][0]} to "
                      f"{planned['approvers'][1]}", highlight=False)
    if planned["widenings"]:
        print_table("Widenings an approver must acknowledge", ["id", "change"],
                    [(w["id"], w["change"]) for w in planned["widenings"]])
    if planned["violations"]:
        console.print(f"[bold red]{len(planned['violations'])} flow(s) to a deployment not allowed to receive that data[/]")
    warn_hidden(planned, "this plan")


def _order(order: list[str] | None) -> str:
    """A lane's deployments in the order they are tried: '-' where the alias took no such
    requests, 'refused' where no deployment may take them."""
    if order is None:
        return "-"
    return " → ".join(order) or "refused"


def _plan(candidate: str, against: str | None = None) -> dict[str, Any]:
    """A plan computed by the control plane over its inventory: of a stored version, or of a file
    (against the active version, or against another file or version)."""
    if against is None and not _is_file(candidate):
        return dict(control_plane().get(f"/admin/policy/versions/{quoted(candidate)}/plan"))
    body = {"source": _loaded(candidate).text, "against": _loaded(against).text if against is not None else None}
    return dict(control_plane().post("/admin/policy/plan", body))


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

    planned = _plan(candidate, str(against) if against is not None else None)
    if json:
        print_json(planned)
        return
    base = planned["from"][:19] if planned["from"] else "(no active version)"
    _print_plan(planned, f"plan [bold]{safe(planned['plan_id'])}[/]: {safe(base)} → {safe(planned['to'][:19])} "
                         f"over {safe(planned['identities'])} identities")


@app.command("diff")
@handles_errors
def diff(a: str = typer.Argument(..., help="A stored version or a policy file."),
         b: str = typer.Argument(..., help="Another one."), json: bool = JsonOption) -> None:
    """Compare two versions: the text, and what moving from A to B changes over the inventory."""

    before, after = _loaded(a), _loaded(b)
    planned = dict(control_plane().post("/admin/policy/plan", {"source": after.text, "against": before.text}))
    lines = list(difflib.unified_diff(before.text.splitlines(), after.text.splitlines(),
                                      before.short_version, after.short_version, lineterm=""))
    if json:
        print_json({"text_diff": lines, **planned})
        return
    for line in lines:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        console.print(shown(line), style=style, highlight=False, markup=False)
    warn_hidden(lines, "the text of these versions")
    _print_plan(planned, f"\n{safe(before.short_version)} → {safe(after.short_version)} over "
                         f"{safe(planned['identities'])} identities")


def _acknowledgements(planned: dict[str, Any], ack: list[str], ack_file: Path | None) -> list[str]:
    chosen = list(ack)
    if ack_file is not None:
        try:
            chosen += [line.split()[0] for line in ack_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            fail(f"cannot read {ack_file}: {exc.strerror}")
    if chosen or not planned["widenings"] or not at_terminal():
        return chosen
    warn_hidden(planned, "this plan")  # before the questions, which show the same text escaped
    for widening in planned["widenings"]:  # at a terminal: one question per widening
        if typer.confirm(f"{shown(widening['id'])}: {shown(widening['change'])} — acknowledge?", default=False):
            chosen.append(widening["id"])
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

    planned = _plan(version)
    acknowledged = _acknowledgements(planned, ack, ack_file)
    approval = control_plane().post(f"/admin/policy/versions/{quoted(version)}/approve",
                                    {"plan_id": plan_id, "acknowledge": acknowledged, "note": note})
    if json:
        print_json(approval)
        return
    console.print(f"[green]approved[/] {approval['version'][:19]} over {approval['plan_id']} "
                  f"({len(approval['acknowledged'])} widening(s) acknowledged)", highlight=False)


@app.command("reject")
@handles_errors
def reject(version: str = typer.Argument(..., help="The stored version (hash prefix)."),
           message: str = MessageOption) -> None:
    """Reject a draft (an approver, or its author withdrawing it)."""

    row = control_plane().post(f"/admin/policy/versions/{quoted(version)}/reject", {"reason": message})
    console.print(f"rejected {row['version'][:19]}", highlight=False)


def _wait_for_workers(version: str, seconds: float) -> None:

    if seconds <= 0:
        return
    started = time.monotonic()
    while True:
        state = control_plane().get("/admin/policy/status")
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

    activation = control_plane().post(f"/admin/policy/versions/{quoted(version)}/apply")
    console.print(f"[green]applied[/] {activation['version']} (activation #{activation['seq']})", highlight=False)
    _wait_for_workers(activation["version"], wait)


@app.command("rollback")
@handles_errors
def rollback(message: str = MessageOption, wait: float = WaitOption) -> None:
    """Go back to the version active before the current one (recorded; approval needed only if
    that version gives access the current one does not)."""

    activation = control_plane().post("/admin/policy/rollback", {"reason": message})
    console.print(f"[green]rolled back[/] to {activation['version']} (activation #{activation['seq']})", highlight=False)
    _wait_for_workers(activation["version"], wait)


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

    body = {"source": load_policy(Path(ref).expanduser()).text} if _is_file(ref) else {"version": ref}
    activation = control_plane().post("/admin/policy/break-glass", {**body, "reason": reason, "ttl": ttl})
    err_console.print(f"[bold red]BREAK-GLASS[/] {activation['version']} active until {_when(activation['expires_at'])} "
                      "UTC; recorded in the audit log and announced through the webhook "
                      f"({activation.get('notification', 'no notification')})", highlight=False)
    _wait_for_workers(activation["version"], wait)


@app.command("review-break-glass")
@handles_errors
def review_break_glass(seq: int = typer.Argument(..., help="The break-glass activation's number (policy status)."),
                       note: str = typer.Option(..., "--note", help="What was checked, and what follows.")) -> None:
    """Review a break-glass activation after the fact (an approver other than who used it): until
    then it is listed by `policy status` and `gatehouse findings`."""
    control_plane().post(f"/admin/policy/break-glass/{seq}/review", {"note": note})
    console.print(f"break-glass activation #{seq} reviewed", highlight=False)


@app.command("status")
@handles_errors
def status(json: bool = JsonOption) -> None:
    """The active version and what each gateway worker enforces. Exits 3 on drift."""

    state = control_plane().get("/admin/policy/status")  # the server ends an expired break-glass first
    if json:
        print_json(state)
    else:
        activation = state["activation"]
        if activation is None:
            console.print("no policy version is active yet (start the gateway once)")
        else:
            console.print(f"active [bold]{safe(state['active'])}[/] ({safe(activation['kind'])} by "
                          f"{safe(activation['actor'])} at {safe(_when(activation['at']))} UTC)", highlight=False)
            if state["break_glass"]:
                console.print(f"[bold red]BREAK-GLASS until {safe(_when(activation['expires_at']))} UTC[/]; "
                              f"returns to {safe(state['baseline'])}", highlight=False)
        for item in state.get("break_glass_unreviewed", []):
            console.print(f"[bold yellow]break-glass #{safe(item['seq'])} by {safe(item['actor'])} is not reviewed "
                          f"yet[/]: `gatehouse policy review-break-glass {safe(item['seq'])} --note …`", highlight=False)
        print_table("Gateway workers", ["worker", "enforces", "state", "seen", "problem"],
                    [(w["worker"], (w["policy_version"] or "-")[:19], w["state"].upper() if w["state"] != "in sync"
                      else w["state"], f"{w['seen_seconds_ago']} s ago", w["problem"] or "") for w in state["workers"]])
        print_table("Recent activations", ["#", "version", "kind", "by", "at", "reason"],
                    [(a["seq"], a["version"][:19], a["kind"], a["actor"], _when(a["at"]), a["reason"] or "")
                     for a in state["history"]])
        warn_hidden(state, "the policy status")
    if state["drift"]:
        raise typer.Exit(3)
