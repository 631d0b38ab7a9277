"""A table cell too long for its column is folded onto more lines, never cut with "…": cut, the
Deployments table showed ``http://onprem.corp.…`` for a URL that goes on to ``@evil.example.com``
(ADR 0017: a reviewer reads every character the policy holds; review r25)."""

from __future__ import annotations

import pytest
from rich.console import Console

from gatehouse.cli import common

URL = "http://onprem.corp.internal.example/v1/" + "x" * 30 + "@evil.example.com:443/v1"


def test_a_long_cell_is_folded_not_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    narrow = Console(width=80, emoji=False)
    monkeypatch.setattr(common, "console", narrow)
    with narrow.capture() as captured:
        common.print_table("Deployments", ["name", "engine", "model", "url", "location", "data classes"],
                           [("onprem", "openai", "m", URL, "on-prem", "public, internal")])
    out = captured.get()
    assert "…" not in out
    cells = "".join(line.split("│")[4].strip() for line in out.splitlines() if line.count("│") == 7)
    assert cells == URL
