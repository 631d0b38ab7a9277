"""Rich draws ``:x:`` as ❌ and ``:white_check_mark:`` as ✅ in console markup, and ``escape``
leaves emoji codes alone; names (``NAME`` allows ':'), notes and reasons that carry them must
be printed as written (ADR 0017: no rich markup interpreted; review r25)."""

from __future__ import annotations

import pytest
import typer

from gatehouse.cli import common
from gatehouse.cli.common import console, err_console, safe


@pytest.mark.parametrize("text", ["chat:x:", "approved :white_check_mark: by security", ":warning:"])
def test_emoji_codes_in_stored_text_are_printed_as_written(text: str) -> None:
    with console.capture() as captured:
        console.print(f"identity [bold]{safe(text)}[/] is now active", highlight=False)
    assert captured.get() == f"identity {text} is now active\n"


def test_errors_print_emoji_codes_as_written() -> None:
    with err_console.capture() as captured, pytest.raises(typer.Exit):
        common.fail("no deployment ok:white_check_mark: here")
    assert "ok:white_check_mark:" in captured.get() and "✅" not in captured.get()


def test_a_table_title_is_text_not_markup() -> None:
    with console.capture() as captured:
        common.print_table("Incident [link=http://evil]inc-1[/link] \x1b[8m", ["field"], [("x",)])
    out = "".join(captured.get().split())  # the title wraps to the table's width
    assert "[link=http://evil]inc-1[/link]" in out and "\\x1b[8m" in out and "\x1b" not in out
