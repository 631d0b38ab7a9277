"""gatehouse policy …"""

from __future__ import annotations

from pathlib import Path

import typer

from gatehouse.cli.common import JsonOption, console, handles_errors, print_json, print_table, settings
from gatehouse.policy.loader import load_policy

app = typer.Typer(help="The policy file: deployments, model aliases with their routes, and grants.",
                  no_args_is_help=True)

PolicyArgument = typer.Argument(None, help="Policy file (default: $GATEHOUSE_HOME/policy.yaml).")


@app.command("validate")
@handles_errors
def validate(path: Path = PolicyArgument, json: bool = JsonOption) -> None:
    """Check a policy file; every problem is reported with its line number."""
    loaded = load_policy(path or settings().policy_path)
    if json:
        print_json({"valid": True, "version": loaded.version})
    else:
        console.print(f"[green]valid[/] — version {loaded.version}")


@app.command("show")
@handles_errors
def show(path: Path = PolicyArgument, json: bool = JsonOption) -> None:
    """Show what a policy routes and grants."""
    loaded = load_policy(path or settings().policy_path)
    document = loaded.document
    if json:
        print_json({"version": loaded.version, "document": document.model_dump(mode="json")})
        return
    console.print(f"policy version [bold]{loaded.version}[/]")
    print_table("Deployments", ["name", "engine", "model", "url", "location", "data classes"],
                [(name, d.engine, d.model, d.url or "(in process)", d.location, ", ".join(d.data_classes))
                 for name, d in document.deployments.items()])
    print_table("Aliases", ["alias", "route (primary → fallbacks)", "description"],
                [(name, " → ".join(a.route), a.description) for name, a in document.aliases.items()])

    def subject_text(subject) -> str:  # type: ignore[no-untyped-def]
        parts = [f"{k}={v}" for k, v in subject.model_dump(exclude_none=True).items() if k != "labels"]
        parts += [f"label {k}={v}" for k, v in (subject.labels or {}).items()]
        return " & ".join(parts)

    print_table("Grants", ["grant", "who", "aliases", "max data class"],
                [(g.name, " | ".join(subject_text(s) for s in g.subjects), ", ".join(g.aliases), g.max_data_class)
                 for g in document.grants])


@app.command("plan")
@handles_errors
def plan_command(
    candidate: Path = typer.Argument(..., help="The proposed policy file."),
    against: Path = typer.Option(None, "--against", help="The policy it would replace (default: the active one, "
                                                         "$GATEHOUSE_HOME/policy.yaml)."),
    json: bool = JsonOption,
) -> None:
    """What replacing the active policy with CANDIDATE would do, over the real inventory: who gains
    or loses which model at which data class (now, and by rule for identities to come), which
    deployments start or stop receiving which data classes, and how routes change."""
    from gatehouse.cli.common import open_db
    from gatehouse.identity.inventory import identity_views
    from gatehouse.policy.plan import plan

    before = load_policy(against or settings().policy_path)
    after = load_policy(candidate)
    views = identity_views(open_db())
    result = plan(before.document, after.document, views)
    if json:
        print_json({"from": before.version, "to": after.version, "identities": len(views), **result.as_dict()})
        return
    console.print(f"plan {before.short_version} → {after.short_version} over {len(views)} identities", highlight=False)
    if not result.widenings:
        console.print("[green]no new access[/]: no identity, rule or deployment gains anything", highlight=False)
    if result.access:
        print_table("Access (identities that exist now)", ["identity", "alias", "before", "after", ""],
                    [(c.identity, c.alias, c.before or "-", c.after or "-", "GAINS" if c.widens else "loses")
                     for c in result.access])
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
    if result.violations:
        console.print(f"[bold red]{len(result.violations)} flow(s) to a deployment not allowed to receive that data[/]")
