"""gatehouse person …"""

from __future__ import annotations

import typer

from gatehouse.cli.common import JsonOption, console, handles_errors, open_db, print_json, print_table
from gatehouse.config import local_actor
from gatehouse.identity import service

app = typer.Typer(help="People: the humans who own workload identities.", no_args_is_help=True)


def _person_dict(person) -> dict:  # type: ignore[no-untyped-def]
    return {"email": person.email, "name": person.name, "team": person.team, "status": person.status,
            "created_at": service.as_utc(person.created_at).isoformat()}


@app.command("add")
@handles_errors
def add(
    email: str = typer.Argument(..., help="The person's e-mail address; their handle everywhere."),
    team: str = typer.Option(None, "--team", help="Team they belong to; identities they create inherit it."),
    name: str = typer.Option(None, "--name", help="Display name."),
    json: bool = JsonOption,
) -> None:
    """Add a person who can own identities."""
    person = service.add_person(open_db(), local_actor(), email, team=team, name=name)
    if json:
        print_json(_person_dict(person))
    else:
        console.print(f"added person [bold]{person.email}[/] (team {person.team or '-'})")


@app.command("list")
@handles_errors
def list_(json: bool = JsonOption) -> None:
    """List people."""
    people = [_person_dict(p) for p in service.list_people(open_db())]
    if json:
        print_json(people)
    else:
        print_table("People", ["email", "name", "team", "status"],
                    [(p["email"], p["name"], p["team"], p["status"]) for p in people])
