"""CSV and key output is printed for files and other programs, exact when piped; at a terminal
a stored purpose's carriage return, C1 control or bidirectional override must not overwrite or
reorder the rows a person reads (ADR 0017; review r25). The admin API refuses C0 controls in a
purpose but lets \\r, C1 and U+202E through."""

from __future__ import annotations

import io
import sys

import pytest

from gatehouse.cli import audit, findings, keys
from gatehouse.cli.common import print_text

CSV = 'kind,name,purpose\nidentity,billing,"ok\rkind,name,purpose all fine \x9b8m \u202eevil"\n'


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


class FakeControlPlane:
    def get(self, path: str, **params: object) -> object:
        return {"public_key": "-----BEGIN PUBLIC KEY-----\n\x1b]8;;http://x\x07k\n"} if path.endswith("public-key") else CSV


@pytest.fixture
def plane(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (findings, keys, audit):
        monkeypatch.setattr(module, "control_plane", FakeControlPlane, raising=False)


def written(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch, call) -> str:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "stdout", stream)
    call()
    return stream.getvalue()


def test_at_a_terminal_nothing_a_terminal_acts_on_is_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    out = written(Terminal(), monkeypatch, lambda: print_text(CSV))
    assert not any(c in out for c in "\r\x9b\u202e")
    assert "ok\\x0dkind" in out and "\\x9b8m" in out and "\\u202eevil" in out
    assert out.count("\n") == CSV.count("\n")  # the rows stay rows


def test_piped_the_text_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    assert written(Pipe(), monkeypatch, lambda: print_text(CSV)) == CSV


@pytest.mark.usefixtures("plane")
def test_every_csv_and_key_command_goes_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for command in (lambda: findings.inventory(json=False, csv=True), lambda: keys.report(csv=True, json=False),
                    audit.public_key):
        out = written(Terminal(), monkeypatch, command)
        assert not any(c in out for c in "\r\x9b\u202e\x1b\x07"), out
