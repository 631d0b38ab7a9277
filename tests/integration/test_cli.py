"""The command line, as a user types it."""

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatehouse.cli.main import app
from gatehouse.policy import change_control, versions
from gatehouse.policy.loader import load_policy
from gatehouse.store.db import Database

runner = CliRunner()


def activate_policy_file(home: Path) -> str:
    """Make the policy file in ``home`` the active version, as the first `gatehouse serve` does."""
    db = Database(f"sqlite:///{home / 'gatehouse.db'}")
    try:
        assert change_control.activate_served_file(db, "local:test", load_policy(home / "policy.yaml"),
                                                   "policy.yaml") == "activated"
        active = versions.active_policy(db)
        assert active is not None
        return active[0].version
    finally:
        db.dispose()


@pytest.fixture
def gh(home: Path, shared_models_dir: Path):
    home.mkdir(parents=True)
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, f"{args}: {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output
        return result

    run("init")
    return run


def test_init_prepares_everything(gh, home):
    assert (home / "policy.yaml").exists() and (home / "gatehouse.db").exists()
    assert (home / "pepper").stat().st_mode & 0o777 == 0o600
    assert gh("policy", "validate").output.startswith("valid")
    assert "already" not in gh("init").output  # idempotent


def test_the_whole_walkthrough(gh, home):
    gh("person", "add", "alice@example.com", "--team", "platform")
    gh("identity", "create", "billing-bot", "--owner", "alice@example.com", "--purpose", "invoices",
       "--label", "tier=gold")
    issued = json.loads(gh("key", "issue", "billing-bot", "--ttl", "7d", "--scope", "chat-small", "--json").stdout)
    assert issued["key"].startswith(f"gth_{issued['key_id']}_") and issued["scopes"] == ["chat-small"]
    plain = gh("key", "issue", "billing-bot", "--ttl", "12h").stdout.strip().splitlines()[-1]
    assert plain.startswith("gth_") and len(plain) == 55
    keys = json.loads(gh("key", "list", "--json").stdout)
    assert {k["key_id"] for k in keys} == {issued["key_id"], plain[4:16]}
    assert all("key" not in k for k in keys)  # never the secret again
    shown = json.loads(gh("identity", "show", "billing-bot", "--json").stdout)
    assert shown["owner"] == "alice@example.com" and shown["labels"] == {"tier": "gold"} and len(shown["keys"]) == 2
    gh("key", "revoke", issued["key_id"], "--reason", "rotated")
    gh("identity", "suspend", "billing-bot", "--reason", "investigation")
    assert json.loads(gh("identity", "list", "--json").stdout)[0]["status"] == "suspended"
    gh("identity", "retire", "billing-bot")
    log = json.loads(gh("audit", "log", "--json").stdout)
    assert [e["action"] for e in log] == ["person.add", "identity.create", "key.issue", "key.issue", "key.revoke",
                                          "identity.suspend", "identity.retire"]
    assert {e["actor"] for e in log} == {log[0]["actor"]} and log[0]["actor"].startswith("local:")
    assert gh("audit", "verify").output.startswith("ok — 7 entries")


@pytest.mark.parametrize("args, message", [
    (("identity", "create", "x", "--owner", "ghost@example.com"), "no person with e-mail"),
    (("key", "issue", "nobody"), "no identity named"),
    (("key", "revoke", "nope"), "invalid key id"),
    (("person", "add", "bad"), "invalid e-mail"),
    (("identity", "show", "nobody"), "no identity named"),
])
def test_mistakes_get_one_clear_line(gh, args, message):
    result = gh(*args, code=1)
    assert result.output.startswith("error:") and message in result.output


def test_ttl_over_the_maximum_is_refused(gh, monkeypatch):
    gh("person", "add", "a@example.com")
    gh("identity", "create", "app", "--owner", "a@example.com")
    assert "over the maximum of 90d" in gh("key", "issue", "app", "--ttl", "100d", code=1).output
    assert "invalid duration" in gh("key", "issue", "app", "--ttl", "forever", code=1).output
    monkeypatch.setenv("GATEHOUSE_MAX_KEY_TTL", "1d")
    assert "over the maximum of 1d" in gh("key", "issue", "app", "--ttl", "2d", code=1).output


def test_policy_validate_reports_lines(gh, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndeployments:\n  x:\n    engine: warp\n    model: m\naliases:\n  a: {route: [y]}\n")
    result = gh("policy", "validate", str(bad), code=1)
    assert "line 4: deployments.x.engine" in result.output
    assert "line 7: aliases.a.route[0]: alias 'a' routes to unknown deployment 'y'" in result.output
    assert "file not found" in gh("policy", "validate", str(tmp_path / "missing.yaml"), code=1).output
    shown = json.loads(gh("policy", "show", "--json").stdout)
    assert shown["version"].startswith("sha256:") and "chat-small" in shown["document"]["aliases"]


def test_tampering_is_named_by_audit_verify(gh, home):
    gh("person", "add", "a@example.com")
    gh("person", "add", "b@example.com")
    gh("identity", "create", "app", "--owner", "a@example.com")
    connection = sqlite3.connect(home / "gatehouse.db")
    connection.execute("UPDATE audit_entries SET details = replace(details, 'a@example.com', 'b@example.com') WHERE seq = 3")
    connection.commit()
    connection.close()
    result = gh("audit", "verify", code=2)
    assert "BROKEN at entry 3" in result.output and "modified" in result.output
    report = json.loads(gh("audit", "verify", "--json", code=2).stdout)
    assert report["ok"] is False and report["first_bad_entry"] == 3


def test_every_command_explains_itself(gh):
    for args in [(), ("person",), ("identity",), ("key",), ("policy",), ("audit",), ("bench",), ("serve",),
                 ("init",), ("demo",), ("key", "issue"), ("identity", "create"), ("policy", "validate")]:
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output and len(result.output) > 200


@pytest.mark.postgres
def test_the_cli_works_the_same_on_postgresql(gh, postgres_server, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", postgres_server.create_database())
    gh("person", "add", "pg@example.com", "--team", "data")
    gh("person", "add", "admin@example.com", "--team", "security")
    gh("person", "grant-role", "admin@example.com", "identity-admin")
    monkeypatch.setenv("GATEHOUSE_ACTOR", "pg@example.com")
    gh("identity", "create", "pg-app", "--owner", "pg@example.com", "--env", "prod")
    monkeypatch.setenv("GATEHOUSE_ACTOR", "admin@example.com")
    gh("identity", "approve", "pg-app")
    assert gh("key", "issue", "pg-app", "--ttl", "1d").stdout.strip().startswith("gth_")
    assert json.loads(gh("identity", "list", "--json").stdout)[0]["environment"] == "prod"
    assert gh("audit", "verify").output.startswith("ok — 6 entries")


def test_rotation_leak_and_departure_from_the_command_line(gh, home, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_NOTIFY_WEBHOOK", "http://127.0.0.1:9/unreachable")
    gh("person", "add", "alice@example.com", "--team", "platform")
    gh("person", "add", "bob@example.com", "--team", "platform")
    gh("identity", "create", "billing-bot", "--owner", "alice@example.com", "--backup-owner", "bob@example.com")
    gh("identity", "create", "lonely-bot", "--owner", "alice@example.com")
    issued = json.loads(gh("key", "issue", "billing-bot", "--json").stdout)
    rotated = json.loads(gh("key", "rotate", issued["key_id"], "--grace", "1h", "--json").stdout)
    assert rotated["old_key_id"] == issued["key_id"] and rotated["key"].startswith("gth_")
    assert rotated["key_id"] != issued["key_id"] and rotated["old_key_stops_at"] < issued["expires_at"]
    gh("key", "rotate", issued["key_id"], code=1)  # only once
    leaked = json.loads(gh("key", "leaked", rotated["key"], "--source", "https://paste.example/x", "--json").stdout)
    assert leaked["key_id"] == rotated["key_id"] and leaked["owner"] == "alice@example.com"
    assert leaked["notification"].startswith("failed")  # the key is revoked all the same
    assert rotated["key"] not in json.dumps(leaked)
    shown = json.loads(gh("identity", "show", "billing-bot", "--json").stdout)
    assert "leaked" in shown["attention"]
    assert any(k["key_id"] == rotated["key_id"] and k["status"] == "revoked" for k in shown["keys"])
    gh("identity", "attended", "billing-bot", "--note", "replaced")
    bad = gh("key", "leaked", "gth_" + "a" * 12 + "_" + "a" * 38, code=1)
    assert "checksum" in bad.output
    departed = json.loads(gh("person", "depart", "alice@example.com", "--json").stdout)
    assert departed["reassigned"] == [{"identity": "billing-bot", "to": "bob@example.com"}]
    assert departed["suspended"] == ["lonely-bot"]
    table = gh("person", "depart", "bob@example.com").output
    assert "suspended: orphaned" in table and "billing-bot" in table
    assert "already departed" in gh("person", "depart", "bob@example.com", code=1).output


def test_findings_inventory_and_credential_report_commands(gh, home, monkeypatch):
    gh("person", "add", "alice@example.com", "--team", "platform")
    gh("identity", "create", "billing-bot", "--owner", "alice@example.com")
    key = json.loads(gh("key", "issue", "billing-bot", "--json").stdout)
    found = json.loads(gh("findings", "--json").stdout)["findings"]
    assert [(f["kind"], f["subject"]) for f in found] == [("no_backup_owner", "identity:billing-bot")]
    monkeypatch.setenv("GATEHOUSE_KEY_ROTATION_AGE", "1s")  # the policy-wide rotation age
    __import__("time").sleep(1.1)  # let the key grow older than it
    found = json.loads(gh("findings", "--json").stdout)["findings"]
    assert ("key_too_old", f"key:{key['key_id']}") in [(f["kind"], f["subject"]) for f in found]
    assert "Findings (2)" in gh("findings").output
    report = gh("key", "report", "--csv").stdout.splitlines()
    assert report[0] == "key_id,identity,owner,created_at,last_used_at,last_model,expires_at,status"
    assert report[1].startswith(f"{key['key_id']},billing-bot,alice@example.com,")
    before = json.loads(gh("inventory", "--json").stdout)
    assert before["policy_version"] is None and "no policy version is active" in before["note"]
    assert next(r for r in before["inventory"] if r["name"] == "billing-bot")["aliases"] == []  # nothing enforced yet
    activate_policy_file(home)  # what `gatehouse serve` does the first time
    inventory = json.loads(gh("inventory", "--json").stdout)
    bot = next(r for r in inventory["inventory"] if r["name"] == "billing-bot")
    assert bot["owner"] == "alice@example.com" and bot["active_keys"] == 1 and bot["aliases"] == ["chat-small"]
    assert inventory["policy_version"].startswith("sha256:") and inventory["note"] is None
    assert gh("inventory", "--csv").stdout.startswith("kind,name,owner,")
    assert "choose one" in gh("inventory", "--csv", "--json", code=1).output


def test_joiner_mover_and_review_from_the_command_line(gh, monkeypatch):
    gh("person", "add", "alice@example.com", "--team", "platform")
    gh("person", "add", "bob@example.com", "--team", "platform")
    gh("person", "add", "carol@example.com", "--team", "finance")
    gh("person", "grant-role", "bob@example.com", "identity-admin")
    monkeypatch.setenv("GATEHOUSE_ACTOR", "bob@example.com")
    assert "nobody changes their own roles" in gh("person", "revoke-role", "bob@example.com", "identity-admin",
                                                   code=1).output
    monkeypatch.setenv("GATEHOUSE_ACTOR", "alice@example.com")
    created = gh("identity", "create", "prod-bot", "--owner", "alice@example.com", "--env", "prod").output
    assert "status pending" in created and "identity approve prod-bot" in created
    assert "active identities only" in gh("key", "issue", "prod-bot", code=1).output
    assert "needs the identity-admin role" in gh("identity", "approve", "prod-bot", code=1).output
    monkeypatch.setenv("GATEHOUSE_ACTOR", "bob@example.com")
    assert "now active" in gh("identity", "approve", "prod-bot").output
    moved = json.loads(gh("identity", "transfer", "prod-bot", "--owner", "carol@example.com", "--team", "finance",
                          "--yes", "--json").stdout)
    assert moved["owner"] == ["alice@example.com", "carol@example.com"] and moved["confirmed"] is True
    refused = gh("identity", "transfer", "prod-bot", "--team", "platform", code=1).output  # no tty: not confirmed
    assert "loses" in refused and "nothing changed" in refused
    assert "review 1 opened: 1 identities" in gh("review", "start", "--due", "7d").output
    assert "only the owner" in gh("review", "attest", "prod-bot", "keep", code=1).output
    monkeypatch.setenv("GATEHOUSE_ACTOR", "carol@example.com")
    gh("review", "attest", "prod-bot", "keep", "--note", "still needed")
    rows = json.loads(gh("review", "status", "--json").stdout)
    assert [(r["identity"], r["decision"]) for r in rows] == [("prod-bot", "keep")]
    assert "nothing past due" in gh("review", "enforce").output


def test_signed_checkpoints_from_the_command_line(gh, home, tmp_path):
    gh("person", "add", "alice@example.com")
    gh("identity", "create", "bot", "--owner", "alice@example.com")
    assert "checkpoint: 2 entries" in gh("audit", "checkpoint", "--export", str(tmp_path / "cp.json")).output
    (tmp_path / "audit.pem").write_text(gh("audit", "public-key").stdout)
    assert (home / "audit-signing-key").stat().st_mode & 0o777 == 0o600
    ok = gh("audit", "verify", "--public-key", str(tmp_path / "audit.pem"), "--checkpoint", str(tmp_path / "cp.json"))
    assert "1 signed checkpoints, exported checkpoint matches" in " ".join(ok.output.split())
    gh("person", "add", "bob@example.com")  # the log grows past the checkpoint: still fine
    gh("audit", "verify", "--public-key", str(tmp_path / "audit.pem"), "--checkpoint", str(tmp_path / "cp.json"))
    connection = sqlite3.connect(home / "gatehouse.db")
    connection.execute("DELETE FROM audit_entries WHERE seq >= 2")
    connection.execute("UPDATE audit_head SET seq = 1, hash = (SELECT hash FROM audit_entries WHERE seq = 1)")
    connection.execute("DELETE FROM audit_checkpoints")
    connection.commit()
    connection.close()
    broken = gh("audit", "verify", "--public-key", str(tmp_path / "audit.pem"), "--checkpoint", str(tmp_path / "cp.json"),
                code=2)
    assert "BROKEN at entry 2: entry 2 is missing" in " ".join(broken.output.split())
    assert "cannot read the public key" in gh("audit", "verify", "--public-key", str(tmp_path / "nope.pem"), code=1).output


def test_policy_plan_over_the_real_inventory(gh, home, tmp_path):
    gh("person", "add", "alice@example.com", "--team", "platform")
    gh("identity", "create", "bot", "--owner", "alice@example.com")
    current = str(home / "policy.yaml")
    assert "no new access" in gh("policy", "plan", current, "--against", current).output
    wider = (home / "policy.yaml").read_text().replace("aliases: [chat-small]",
                                                        "aliases: [chat-small]\n    max_data_class: confidential")
    assert wider != (home / "policy.yaml").read_text()
    (tmp_path / "wider.yaml").write_text(wider)
    result = json.loads(gh("policy", "plan", str(tmp_path / "wider.yaml"), "--against", current, "--json").stdout)
    assert result["no_new_access"] is False and result["identities"] == 1
    assert [(c["identity"], c["alias"], c["before"], c["after"]) for c in result["access"]] == [
        ("bot", "chat-small", "internal", "confidential")]
    assert "rule: environment=dev → chat-small at confidential" in [w["change"] for w in result["widenings"]]
    assert "GAINS" in gh("policy", "plan", str(tmp_path / "wider.yaml"), "--against", current).output


def test_policy_change_control_from_the_command_line(gh, home, tmp_path, monkeypatch):
    def as_person(email, *args, code=0):
        monkeypatch.setenv("GATEHOUSE_ACTOR", email)
        try:
            return gh(*args, code=code)
        finally:
            monkeypatch.delenv("GATEHOUSE_ACTOR")

    for email in ("alice@example.com", "bob@example.com", "carol@example.com"):
        gh("person", "add", email, "--team", "platform")
    gh("person", "grant-role", "alice@example.com", "identity-admin")
    as_person("alice@example.com", "person", "grant-role", "bob@example.com", "policy-admin")
    as_person("alice@example.com", "person", "grant-role", "carol@example.com", "approver")
    gh("identity", "create", "bot", "--owner", "alice@example.com")
    policy = str(home / "policy.yaml")
    assert "needs to know who you are" in gh("policy", "propose", policy, "-m", "first", code=1).output
    version = json.loads(as_person("bob@example.com", "policy", "propose", policy, "-m", "first", "--json").stdout)["version"]
    ref = version[7:19]
    plan = json.loads(gh("policy", "plan", ref, "--json").stdout)
    assert plan["from"] is None and plan["widenings"]  # the first version widens everything
    acks = [arg for w in plan["widenings"] for arg in ("--ack", w["id"])]
    assert "nobody approves their own" not in as_person("bob@example.com", "policy", "approve", ref, "--plan", plan["plan_id"],
                                                        *acks, code=1).output  # bob lacks the role altogether
    refused = as_person("carol@example.com", "policy", "approve", ref, "--plan", plan["plan_id"], code=1)
    assert "not acknowledged" in refused.output
    (tmp_path / "acks.txt").write_text("\n".join(w["id"] + "  # " + w["change"] for w in plan["widenings"]))
    assert "approved" in as_person("carol@example.com", "policy", "approve", ref, "--plan", plan["plan_id"],
                                   "--ack-file", str(tmp_path / "acks.txt")).output
    listed = json.loads(gh("policy", "list", "--json").stdout)
    assert [(v["version"], v["state"], v["approvals"]) for v in listed] == [(version, "draft", ["person:carol@example.com"])]
    assert "Policy versions" in gh("policy", "list").output
    applied = as_person("bob@example.com", "policy", "apply", ref)
    assert "applied" in applied.output and "no gateway worker is running" in applied.output
    status = json.loads(gh("policy", "status", "--json").stdout)
    assert status["active"] == version and status["drift"] is False
    shown = json.loads(gh("policy", "show", ref, "--json").stdout)
    assert shown["state"] == "active" and shown["message"] == "first"
    assert [a["approver"] for a in shown["approvals"]] == ["person:carol@example.com"]
    assert "Approvals" in gh("policy", "show", ref).output
    text = (home / "policy.yaml").read_text()
    (tmp_path / "narrower.yaml").write_text(text[:text.index("grants:")] + "grants: []\n")
    diff = gh("policy", "diff", ref, str(tmp_path / "narrower.yaml")).output
    assert "-grants:" in diff and "+grants: []" in diff and "no new access" in diff
    assert "rolled back" not in as_person("bob@example.com", "policy", "rollback", "-m", "nothing before", code=1).output
    glass = as_person("bob@example.com", "policy", "break-glass", str(tmp_path / "narrower.yaml"), "--reason",
                      "incident 12", "--ttl", "30m")
    assert "BREAK-GLASS" in glass.output
    assert "BREAK-GLASS until" in gh("policy", "status").output
    ended = as_person("bob@example.com", "policy", "rollback", "-m", "incident over")
    assert f"rolled back to {version}" in " ".join(ended.output.split())
    assert "not a policy version" in gh("policy", "show", "nope", code=1).output
