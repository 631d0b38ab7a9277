"""What people read is what the policy says (issue 25): a policy, a message or a stored text
that carries an escape sequence, a C1 control, a bell, a backspace or carriage return, a
bidirectional override or isolate, a zero-width character, a Cyrillic look-alike or rich
markup reaches the terminal, the approval prompts, the webhook and the pager as a visible
mark, never as the raw character; ``--json`` keeps the exact text.

Through the real command line (the in-process control plane), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_cli

from gatehouse.cli import policy as policy_cli
from gatehouse.core.config import Settings
from gatehouse.core.display import texts
from gatehouse.monitoring.pager import page

from helpers import Receiver

gh = test_cli.gh  # the command line on a fresh installation (its fixture)
admin_key = test_cli.admin_key

# every kind the issue names, each as the raw character and the mark people see instead
RAW = {"\x1b": "\\x1b", "\x9b": "\\x9b", "\x07": "\\x07", "\x08": "\\x08", "\r": "\\x0d", "\u202e": "\\u202e",
       "\u2066": "\\u2066", "\u2069": "\\u2069", "\u200b": "\\u200b", "\u2060": "\\u2060", "\ufeff": "\\ufeff",
       "\u043e": "\\u043e"}
MODEL = "m-\u043enprem\x1b[8m hidden\x9b31m\x07\x08\rsafe"  # Cyrillic о; conceal; C1 CSI; bell; overwrite
URL = "http://10.0.0.5:8000/v1\u202emoc.live"  # the rest of the row reversed
DESCRIPTION = "[bold red]trusted[/] \u200b\u2060\ufeff \u2066isolated\u2069"  # markup; zero-width; isolate
# what a caller stores (a message, a reason, a purpose): the admin API refuses C0 controls but
# for tab, newline and carriage return; C1, bidirectional and zero-width characters pass
STORED = "routine\x9b2K\rnothing\u202e to see\u200b"  # C1 erase-line, back to the start, reversed, hidden
STORED_SHOWN = "routine\\x9b2K\\x0dnothing\\u202e to see\\u200b"


def yaml_quoted(text: str) -> str:
    """A YAML double-quoted scalar holding ``text`` exactly (JSON's escapes are YAML's)."""
    return json.dumps(text)


def planted(home: Path) -> str:
    starter = (home / "policy.yaml").read_text()
    deployments, rest = starter.split("\naliases:\n", 1)
    aliases, grants = rest.split("\ngrants:\n", 1)
    return (f"{deployments}\n  m-onprem:\n    engine: openai\n    url: {yaml_quoted(URL)}\n"
            f"    model: {yaml_quoted(MODEL)}\n    location: on-prem\n    data_classes: [public, internal]\n"
            f"\naliases:\n{aliases}\n  chat-big:\n    description: {yaml_quoted(DESCRIPTION)}\n    route: [m-onprem]\n"
            f"\ngrants:\n{grants}  - name: dev-chat-big\n    subjects: [{{environment: dev}}]\n    aliases: [chat-big]\n")


def assert_shown(output: str, *marks: str, lookalikes: bool = True) -> None:
    """No raw character of any planted kind reached the output (but for look-alike letters,
    which JSON keeps as they are, when ``lookalikes`` is false); each mark asked for did."""
    leaked = [repr(raw) for raw in RAW if raw in output and (lookalikes or raw != "\u043e")]
    assert not leaked, f"raw {leaked} in:\n{output}"
    for mark in marks:
        assert mark in output, f"{mark!r} not in:\n{output}"


@pytest.fixture
def wide(gh, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "1000")  # rich wraps table cells at the terminal's width: one row, one line
    path = tmp_path / "wide.yaml"
    path.write_text(planted(home))
    return path


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_a_policy_file_is_shown_escaped_and_its_json_stays_exact(gh, wide):
    shown = gh("policy", "show", str(wide)).output
    assert_shown(shown, *RAW.values(), "[bold red]trusted[/]", "warning:", "hidden or look-alike characters")
    exact = json.loads(gh("policy", "show", str(wide), "--json").stdout)["document"]
    assert exact["deployments"]["m-onprem"]["model"] == MODEL and exact["deployments"]["m-onprem"]["url"] == URL
    assert exact["aliases"]["chat-big"]["description"] == DESCRIPTION
    # JSON escapes what a terminal acts on (\u001b, \u009b, \u202e, …); letters stay letters
    assert_shown(gh("policy", "show", str(wide), "--json").stdout, lookalikes=False)
    assert_shown(gh("policy", "validate", str(wide)).output)


def test_plan_and_diff_show_every_kind_escaped(gh, home, wide):
    plan = gh("policy", "plan", str(wide), "--against", str(home / "policy.yaml")).output
    assert "Widenings an approver must acknowledge" in plan
    assert_shown(plan, "m-\\u043enprem\\x1b[8m", "\\u202e", "warning:")
    planned = json.loads(gh("policy", "plan", str(wide), "--against", str(home / "policy.yaml"), "--json").stdout)
    assert any(MODEL in text for text in texts(planned))  # the plan's data keeps the exact text
    diff = gh("policy", "diff", str(home / "policy.yaml"), str(wide)).output
    assert_shown(diff, "+    model: ", "warning:")  # the text diff too: YAML's own escapes, never a raw character


def test_propose_approve_apply_status_show_list_never_print_a_raw_character(gh, home, wide, monkeypatch, webhook):
    test_cli.activate_policy_file(home)
    monkeypatch.setenv("GATEHOUSE_NOTIFY_WEBHOOK", webhook.url)
    bob = admin_key(gh, "bob@example.com", "policy-admin")
    carol = admin_key(gh, "carol@example.com", "approver")
    version = json.loads(gh("policy", "propose", str(wide), "-m", STORED, "--json", key=bob).stdout)["version"]
    ref = version[7:19]
    plan = json.loads(gh("policy", "plan", ref, "--json", key=carol).stdout)
    assert plan["widenings"]
    monkeypatch.setattr(policy_cli, "at_terminal", lambda: True)  # carol answers each question at a terminal
    approved = gh("policy", "approve", ref, "--plan", plan["plan_id"], key=carol, stdin="y\n" * len(plan["widenings"]))
    assert_shown(approved.output, "acknowledge?", "warning:", "\\x1b[8m")
    assert "approved" in approved.output
    listed = gh("policy", "list", key=carol).output
    assert_shown(listed, STORED_SHOWN)
    assert json.loads(gh("policy", "list", "--json", key=carol).stdout)[0]["message"] == STORED  # exact
    version_shown = gh("policy", "show", ref, key=carol).output
    assert_shown(version_shown, STORED_SHOWN, "m-\\u043enprem", "[bold red]trusted[/]")
    gh("policy", "apply", ref, key=bob)
    assert_shown(gh("policy", "status", key=carol).output, "active")
    glass = gh("policy", "break-glass", str(home / "policy.yaml"), "--reason", f"incident\u202e21 {STORED}", key=bob)
    assert_shown(glass.output, "BREAK-GLASS")
    assert_shown(gh("policy", "status", key=carol).output, f"incident\\u202e21 {STORED_SHOWN}")  # activation reason
    event = next(e for e in webhook.received if e.get("event") == "policy.break_glass")
    assert event["reason"] == f"incident\\u202e21 {STORED_SHOWN}"  # what people in the channel read


def test_stored_text_and_errors_elsewhere_in_the_cli(gh, wide):
    gh("person", "add", "alice@example.com", "--team", "platform", "--name", "Al\u202eecila\x9b8m")
    gh("identity", "create", "bot", "--owner", "alice@example.com", "--purpose", f"{DESCRIPTION} {STORED}")
    assert_shown(gh("person", "list").output, "Al\\u202eecila\\x9b8m")
    listed = gh("identity", "list").output
    assert_shown(listed, "[bold red]trusted[/]", "\\u200b")
    shown = gh("identity", "show", "bot").output  # field lines are printed with markup: it must stay text
    assert_shown(shown, "[bold red]trusted[/]", "\\u2066isolated\\u2069", STORED_SHOWN)
    assert json.loads(gh("identity", "show", "bot", "--json").stdout)["purpose"] == f"{DESCRIPTION} {STORED}"
    missing = gh("identity", "show", "gh\u043est\x1b[8m", code=1).output  # the error names it, escaped
    assert_shown(missing, "error:")


def test_pages_carry_no_raw_character(settings: Settings, webhook):
    paging = dataclasses.replace(settings, pager_url=webhook.url, pager_routing_key="routing-key")
    event = {"threshold": "err\x1b[8m", "subject": "b\u043et", "condition": f"rate \u202e> 0.5 {STORED}",
             "scope": "identity"}
    assert page(paging, "trigger", "inc-1", event) == "delivered"
    body = webhook.received[-1]
    assert_shown(json.dumps(body, ensure_ascii=False))
    assert body["payload"]["summary"].startswith("Gatehouse inc-1: err\\x1b[8m on b\\u043et: rate \\u202e> 0.5")
    assert body["payload"]["custom_details"]["condition"] == f"rate \\u202e> 0.5 {STORED_SHOWN}"
