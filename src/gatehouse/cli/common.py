"""Shared pieces of the command line: settings, the store, output and errors."""

from __future__ import annotations

import functools
import getpass
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gatehouse.audit import delivery
from gatehouse.core.config import Settings
from gatehouse.core.display import flagged, json_safe, shown, texts
from gatehouse.core.errors import GatehouseError
from gatehouse.policy.loader import PolicyError
from gatehouse.store.db import Database

# emoji=False: a ":x:" or ":white_check_mark:" in a name, note or reason is printed as written,
# not drawn as ❌ or ✅ (rich's escape() covers markup, not emoji codes)
console = Console(emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)
F = TypeVar("F", bound=Callable[..., Any])

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def settings() -> Settings:
    return Settings.from_env()


def open_db(upgrade: bool = True) -> Database:

    config = settings()
    delivery.configure(config)  # sign the cadence (the key made on first use) and witness each checkpoint
    db = Database(config.database_url)
    if upgrade:
        db.upgrade()
    return db


def database_shown(url: str) -> str:
    """Where the store is, for a person: driver, host, port and database, never the user's
    password or the query string (``?password=`` and ``sslpassword=`` are libpq's too)."""
    from sqlalchemy.engine import make_url  # lazy: only the commands that open a store need it
    from sqlalchemy.exc import ArgumentError

    try:
        parts = make_url(url)
    except (ArgumentError, ValueError):
        return "(a database URL that does not parse)"
    port = f":{parts.port}" if parts.port else ""
    return safe(f"{parts.drivername}://{parts.host or ''}{port}/{parts.database or ''}")


def safe(value: object) -> str:
    """Policy or stored text to put inside console markup: ``shown`` (ADR 0017), and markup
    escaped, so that a ``[bold]`` in a name is printed, not applied."""
    return escape(shown(value))


FLAGGED_SHOWN = 10


def warn_hidden(value: Any, what: str = "this text") -> None:
    """Say, where a person will read it, that ``value`` (any JSON-like value: a plan, a
    version) carries hidden or look-alike characters, and which texts hold them."""
    found = flagged(texts(value))
    if not found:
        return
    console.print(f"[bold yellow]warning:[/] {escape(what)} carries hidden or look-alike characters, shown as "
                  "escapes (\\x1b, \\u202e, …) wherever it is printed; check these before trusting it:",
                  highlight=False)
    for text, kinds in found[:FLAGGED_SHOWN]:
        console.print(Text(f"  {text}  ({', '.join(kinds)})"), highlight=False)
    if len(found) > FLAGGED_SHOWN:
        console.print(f"  … and {len(found) - FLAGGED_SHOWN} more", highlight=False)


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {safe(message)}", highlight=False)
    raise typer.Exit(code)


def handles_errors(func: F) -> F:
    """Turn expected failures into one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PolicyError as exc:
            err_console.print(f"[bold red]error:[/] {safe(exc.source)}: invalid policy", highlight=False)
            for problem in exc.problems:
                err_console.print(f"  {shown(problem)}", highlight=False, markup=False)
            raise typer.Exit(1) from None
        except (GatehouseError, ValueError) as exc:
            fail(str(exc))
        except Exception as exc:
            from sqlalchemy.exc import OperationalError

            if isinstance(exc, OperationalError):
                fail(f"cannot use the database: {str(exc.orig).splitlines()[0] if exc.orig else exc}")
            raise

    return cast(F, wrapper)  # functools.wraps keeps the signature typer reads


def at_terminal() -> bool:
    """Whether a person types the answers: only then does a command ask its questions."""
    return sys.stdin.isatty()


def print_json(value: Any) -> None:
    """Exact JSON, with the characters a terminal would act on inside its strings escaped."""
    encoded = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    sys.stdout.write(json_safe(encoded) + "\n")


def print_text(text: str) -> None:
    """Text meant for a file or another program (CSV, a PEM key), exact when stdout is not a
    terminal; at a terminal each line ``shown``, so that a carriage return, a C1 control or a
    bidirectional override a stored purpose holds cannot overwrite or reorder what is read."""
    out = sys.stdout
    if out.isatty():
        lines = text.split("\n")
        text = "\n".join(shown(line) for line in lines)
    out.write(text)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    # the title is text too (it can carry an incident's id or a name), never markup
    table = Table(title=Text(shown(title)), show_lines=False, header_style="bold")
    for column in columns:  # fold, never cut: rich's default "…" hid the end of a long URL or name
        table.add_column(column, overflow="fold")
    for row in rows:  # cells are data, never markup: a "[/]" in a name must neither crash nor restyle
        table.add_row(*(Text(shown(cell)) for cell in row))
    console.print(table)


def local_actor() -> str:
    """Who runs a command that works on this machine's store without signing in (``init``,
    ``recover``, ``serve``'s first activation): ``local:<os user>``. It is never a person:
    everything a person does goes through the admin API with their own key, and no variable
    (``GATEHOUSE_ACTOR`` included) can name one."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers)
        user = str(os.getuid())
    return f"local:{user}"
