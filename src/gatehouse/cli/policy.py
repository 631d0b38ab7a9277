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
