"""The command line, as a user types it: a client of the admin API, signed in as a person.

`gatehouse init --admin root@example.com` bootstraps the installation and keeps root's admin
key in the 0600 profile; other people sign in with the admin keys root issues them
(GATEHOUSE_ADMIN_KEY). GATEHOUSE_ACTOR names nobody any more.
"""

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from gatehouse.cli.client import LOCAL, ControlPlane, http_client
from gatehouse.cli.main import app
from gatehouse.core.config import Settings
from gatehouse.policy import change_control, versions
from gatehouse.policy.loader import load_policy
from gatehouse.store.db import Database

from helpers import Receiver

runner = CliRunner()
ROOT = "root@example.com"
BOOTSTRAP_ENTRIES = 4  # person.add, role.grant, admin_key.issue, installation.bootstrap


def activate_policy_file(home: Path) -> str:
    """Make the policy file in ``home`` the active version, as the first `gatehouse serve` does."""
    db = Database(Settings.from_env().database_url)
    try:
        assert change_control.activate_served_file(db, "local:test", load_policy(home / "policy.yaml"),
                                                   "policy.yaml") == "activated"
        active = versions.active_policy(db)
        assert active is not None
        return active[0].version
    finally:
        db.dispose()


def store_sql(*statements: str) -> None:
    """Change the store behind the API's back: what a person with the database could do."""
    db = Database(Settings.from_env().database_url)
    try:
        with db.write() as session:
            for statement in statements:
                session.execute(text(statement))
    finally:
        db.dispose()


@pytest.fixture
def gh(home: Path, shared_models_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):
    """The command line on a fresh installation, on SQLite and on a real PostgreSQL server."""
    home.mkdir(parents=True)
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    for name in ("GATEHOUSE_ADMIN_KEY", "GATEHOUSE_URL", "GATEHOUSE_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", database_url)

    def run(*args: str, code: int = 0, key: str | None = None, stdin: str | None = None):
        if key is None:
            monkeypatch.delenv("GATEHOUSE_ADMIN_KEY", raising=False)
        else:
            monkeypatch.setenv("GATEHOUSE_ADMIN_KEY", key)
        result = runner.invoke(app, list(args), input=stdin)
        assert result.exit_code == code, f"{args}: {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output
        return result

    run.started = run("init", "--admin", ROOT, "--team", "platform", "--save-profile")  # type: ignore[attr-defined]  # kept for the codes
    return run


def admin_key(gh, email: str, *roles: str, team: str = "platform") -> str:
    """Add a person with these roles (as root) and return an admin key issued to them."""
    gh("person", "add", email, "--team", team)
    for role in roles:
        gh("person", "grant-role", email, role)
    enrolment = gh("person", "admin-key", email, "--ttl", "1d").stdout.strip().splitlines()[-1]
    plane = ControlPlane(http_client(Settings.from_env(), LOCAL, enrolment))  # the person exchanges it, as login does
    return str(plane.post("/admin/admin-keys/redeem", {"ttl": "1d"})["key"])


def test_init_prepares_everything_and_signs_the_first_admin_in(gh, home):
    assert (home / "policy.yaml").exists()
    assert (home / "pepper").stat().st_mode & 0o777 == 0o600
    assert (home / "profile.json").stat().st_mode & 0o777 == 0o600
    assert gh("policy", "validate").output.startswith("valid")
    assert "already" not in gh("init").output  # idempotent without --admin
    me = json.loads(gh("whoami", "--json").stdout)
    assert me["email"] == ROOT and me["roles"] == ["identity-admin"]


def test_the_bootstrap_happens_once_per_installation_even_when_every_admin_has_left(gh, home):
    assert "bootstrapped already" in gh("init", "--admin", "mallory@example.com", code=1).output
    bob = admin_key(gh, "bob@example.com", "identity-admin")
    gh("person", "depart", ROOT, key=bob)
    assert "nobody records their own departure" in gh("person", "depart", "bob@example.com", key=bob, code=1).output
    store_sql("UPDATE people SET status = 'departed'")  # bob leaves too: no identity-admin is left
    assert "bootstrapped already" in gh("init", "--admin", "mallory@example.com", code=1).output
    gh("person", "add", "mallory@example.com", key=bob, code=1)  # a departed person's key does nothing


def test_gatehouse_actor_names_nobody(gh, monkeypatch):
    alice = admin_key(gh, "alice@example.com")  # no role at all
    monkeypatch.setenv("GATEHOUSE_ACTOR", ROOT)
    refused = gh("person", "add", "eve@example.com", key=alice, code=1).output
    assert "identity-admin" in refused  # alice is who authenticated, whatever the variable says
    assert json.loads(gh("whoami", "--json", key=alice).stdout)["email"] == "alice@example.com"
    gh("person", "add", "eve@example.com")  # root, from the profile
    audited = json.loads(gh("audit", "log", "--json").stdout)
    assert audited[-1]["action"] == "person.add" and audited[-1]["actor"] == f"person:{ROOT}"


def test_without_a_key_nothing_happens(gh, home):
    (home / "profile.json").unlink()
    assert "not signed in" in gh("person", "add", "eve@example.com", code=1).output
    assert "invalid admin key" in gh("person", "list", key="gth_" + "a" * 12 + "_" + "a" * 38, code=1).output


def test_a_departed_person_can_do_nothing(gh):
    leaver = admin_key(gh, "leaver@example.com", "identity-admin")
    gh("person", "add", "ap@example.com")
    gh("person", "depart", "leaver@example.com")
    for args in (("person", "admin-key", "ap@example.com"), ("person", "add", "x@example.com"),
                 ("identity", "create", "x-bot", "--owner", "ap@example.com"), ("person", "list")):
        result = gh(*args, key=leaver, code=1)
        assert "revoked" in result.output or "not active" in result.output, result.output


def test_issuing_an_admin_key_needs_identity_admin(gh):
    approver = admin_key(gh, "carol@example.com", "approver")
    gh("person", "add", "dave@example.com")
    assert "identity-admin" in gh("person", "admin-key", "dave@example.com", key=approver, code=1).output
    issued = gh("person", "admin-key", "dave@example.com")
    enrolment = issued.stdout.strip().splitlines()[-1]
    assert enrolment.startswith("gth_") and "enrolment key" in issued.output
    assert "exchange it for your own" in gh("person", "list", key=enrolment, code=1).output  # root can't act as dave
    signed_in = gh("login", "--key-stdin", stdin=enrolment + "\n")  # dave: his own key, which root never sees
    assert "exchanged the enrolment key" in signed_in.output
    assert json.loads(gh("whoami", "--json").stdout)["email"] == "dave@example.com"
    assert "revoked" in gh("login", "--key-stdin", stdin=enrolment + "\n", code=1).output  # single use


def test_the_whole_walkthrough(gh, home):
    second = admin_key(gh, "sam@example.com", "identity-admin")
    gh("person", "add", "alice@example.com", "--team", "platform")
    created = gh("identity", "create", "billing-bot", "--owner", "alice@example.com", "--purpose", "invoices",
                 "--label", "tier=gold").output
    assert "status pending" in created  # labels select grants: another identity-admin approves them
    gh("identity", "approve", "billing-bot", key=second)
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
    log = json.loads(gh("audit", "log", "--json").stdout)[BOOTSTRAP_ENTRIES:]
    assert [e["action"] for e in log][-8:] == ["person.add", "identity.create", "identity.approve", "key.issue",
                                               "key.issue", "key.revoke", "identity.suspend", "identity.retire"]
    assert {e["actor"] for e in log[-8:]} == {f"person:{ROOT}", "person:sam@example.com"}
    assert gh("audit", "verify").output.startswith(f"ok — {BOOTSTRAP_ENTRIES + len(log)} entries")


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
    gh("person", "add", "a@example.com", "--team", "platform")
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
    seq = BOOTSTRAP_ENTRIES + 3
    store_sql("UPDATE audit_entries SET details = replace(details, 'a@example.com', 'b@example.com') "
              f"WHERE seq = {seq}")
    result = gh("audit", "verify", code=2)
    assert f"BROKEN at entry {seq}" in result.output and "modified" in result.output
    report = json.loads(gh("audit", "verify", "--json", code=2).stdout)
    assert report["ok"] is False and report["first_bad_entry"] == seq


def test_every_command_explains_itself(gh):
    for args in [(), ("person",), ("identity",), ("key",), ("policy",), ("audit",), ("bench",), ("serve",),
                 ("init",), ("demo",), ("login",), ("recover",), ("key", "issue"), ("identity", "create"),
                 ("policy", "validate")]:
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output and len(result.output) > 200


@pytest.mark.postgres
def test_the_cli_works_the_same_on_postgresql(home, shared_models_dir, postgres_server, monkeypatch):
    home.mkdir(parents=True)
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", postgres_server.create_database())
    monkeypatch.delenv("GATEHOUSE_ADMIN_KEY", raising=False)

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, f"{args}: {result.exit_code}\n{result.output}"
        return result

    started = run("init", "--admin", ROOT)
    assert not (home / "profile.json").exists()  # not the local SQLite store: the key is printed, not kept
    key = [line for line in started.stdout.splitlines() if line.startswith("gth_")][0]
    monkeypatch.setenv("GATEHOUSE_ADMIN_KEY", key)
    run("person", "add", "pg@example.com", "--team", "data")
    run("identity", "create", "pg-app", "--owner", "pg@example.com", "--env", "prod")
    assert json.loads(run("identity", "list", "--json").stdout)[0]["status"] == "pending"
    assert run("audit", "verify").output.startswith(f"ok — {BOOTSTRAP_ENTRIES + 2} entries")


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


def test_only_an_identity_admin_clears_an_orphan_flag(gh):
    owner = admin_key(gh, "olga@example.com")  # no role
    gh("identity", "create", "orphan", "--owner", "olga@example.com")
    backup = admin_key(gh, "pat@example.com")
    gh("person", "depart", "olga@example.com")
    assert "identity-admin" in gh("identity", "attended", "orphan", "--note", "x", key=backup, code=1).output
    assert "identity-admin" in gh("identity", "resume", "orphan", key=backup, code=1).output
    assert "revoked" in gh("identity", "attended", "orphan", key=owner, code=1).output  # her key died with her
    gh("identity", "attended", "orphan", "--note", "new owner found")  # root may


def test_findings_inventory_and_credential_report_commands(gh, home, monkeypatch):
    gh("person", "add", "alice@example.com", "--team", "platform")
    gh("identity", "create", "billing-bot", "--owner", "alice@example.com")
    key = json.loads(gh("key", "issue", "billing-bot", "--json").stdout)
    found = json.loads(gh("findings", "--json").stdout)["findings"]
    assert [(f["kind"], f["subject"]) for f in found] == [("no_backup_owner", "identity:billing-bot")]
    found = json.loads(gh("findings", "--json", "--rotation-days", "1").stdout)["findings"]
    assert [(f["kind"], f["subject"]) for f in found] == [("no_backup_owner", "identity:billing-bot")]
    assert "Findings (1)" in gh("findings").output
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


def test_joiner_mover_and_review_from_the_command_line(gh):
    alice = admin_key(gh, "alice@example.com")
    bob = admin_key(gh, "bob@example.com", "identity-admin")
    carol = admin_key(gh, "carol@example.com", team="finance")
    assert "nobody changes their own roles" in gh("person", "revoke-role", "bob@example.com", "identity-admin",
                                                   key=bob, code=1).output
    created = gh("identity", "create", "prod-bot", "--owner", "alice@example.com", "--env", "prod", key=alice).output
    assert "status pending" in created and "identity approve prod-bot" in created
    assert "active identities only" in gh("key", "issue", "prod-bot", key=alice, code=1).output
    assert "needs the identity-admin role" in gh("identity", "approve", "prod-bot", key=alice, code=1).output
    assert "now active" in gh("identity", "approve", "prod-bot", key=bob).output
    moved = json.loads(gh("identity", "transfer", "prod-bot", "--owner", "carol@example.com", "--team", "finance",
                          "--yes", "--json", key=bob).stdout)
    assert moved["owner"] == ["alice@example.com", "carol@example.com"] and moved["confirmed"] is True
    refused = gh("identity", "transfer", "prod-bot", "--team", "platform", key=bob, code=1).output  # no tty
    assert "loses" in refused and "nothing changed" in refused
    assert "review 1 opened: 1 identities" in gh("review", "start", "--due", "7d", key=bob).output
    assert "only the owner" in gh("review", "attest", "prod-bot", "keep", key=bob, code=1).output
    gh("review", "attest", "prod-bot", "keep", "--note", "still needed", key=carol)
    rows = json.loads(gh("review", "status", "--json", key=bob).stdout)
    assert [(r["identity"], r["decision"]) for r in rows] == [("prod-bot", "keep")]
    assert "nothing past due" in gh("review", "enforce", key=bob).output


def test_an_owner_cannot_raise_their_identitys_clearance_by_moving_it_around(gh):
    alice = admin_key(gh, "alice@example.com", "identity-admin")
    gh("person", "add", "bob@example.com", "--team", "platform")
    gh("identity", "create", "mine", "--owner", "alice@example.com", key=alice)

    def clearance() -> str:
        return str(json.loads(gh("identity", "show", "mine", "--json").stdout)["data_clearance"])

    assert gh("identity", "set-clearance", "mine", "restricted", key=alice, code=1).output.startswith("error:")
    gh("identity", "transfer", "mine", "--owner", "bob@example.com", "--yes", key=alice)
    assert gh("identity", "set-clearance", "mine", "restricted", key=alice, code=1).output.startswith("error:")
    assert clearance() == "internal"  # she owned it: she may never raise it, whoever owns it now
    gh("identity", "set-clearance", "mine", "confidential")  # root never owned, backed up or requested it
    assert clearance() == "confidential"


def test_signed_checkpoints_from_the_command_line(gh, home, tmp_path):
    gh("person", "add", "alice@example.com")
    gh("identity", "create", "bot", "--owner", "alice@example.com")
    size = BOOTSTRAP_ENTRIES + 2
    assert f"checkpoint: {size} entries" in gh("audit", "checkpoint", "--export", str(tmp_path / "cp.json")).output
    (tmp_path / "audit.pem").write_text(gh("audit", "public-key").stdout)
    assert (home / "audit-signing-key").stat().st_mode & 0o777 == 0o600
    ok = gh("audit", "verify", "--public-key", str(tmp_path / "audit.pem"), "--checkpoint", str(tmp_path / "cp.json"))
    assert "signed checkpoints, exported checkpoint matches" in " ".join(ok.output.split())
    gh("person", "add", "bob@example.com")  # the log grows past the checkpoint: still fine
    gh("audit", "verify", "--public-key", str(tmp_path / "audit.pem"), "--checkpoint", str(tmp_path / "cp.json"))
    store_sql(f"DELETE FROM audit_entries WHERE seq >= {size}",
              f"UPDATE audit_head SET seq = {size - 1}, hash = (SELECT hash FROM audit_entries WHERE seq = {size - 1})",
              "DELETE FROM audit_checkpoints")
    broken = gh("audit", "verify", "--public-key", str(tmp_path / "audit.pem"), "--checkpoint", str(tmp_path / "cp.json"),
                code=2)
    assert f"BROKEN at entry {size}: entry {size} is missing" in " ".join(broken.output.split())
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
    monkeypatch.setenv("GATEHOUSE_NOTIFY_WEBHOOK", "http://127.0.0.1:9/unreachable")
    bob = admin_key(gh, "bob@example.com", "policy-admin")
    carol = admin_key(gh, "carol@example.com", "approver")
    gh("person", "add", "alice@example.com", "--team", "platform")
    gh("identity", "create", "bot", "--owner", "alice@example.com")
    policy = str(home / "policy.yaml")
    assert "policy-admin" in gh("policy", "propose", policy, "-m", "first", code=1).output  # root is no policy-admin
    version = json.loads(gh("policy", "propose", policy, "-m", "first", "--json", key=bob).stdout)["version"]
    ref = version[7:19]
    plan = json.loads(gh("policy", "plan", ref, "--json", key=carol).stdout)
    assert plan["from"] is None and plan["widenings"]  # the first version widens everything
    acks = [arg for w in plan["widenings"] for arg in ("--ack", w["id"])]
    assert "approver" in gh("policy", "approve", ref, "--plan", plan["plan_id"], *acks, key=bob, code=1).output
    refused = gh("policy", "approve", ref, "--plan", plan["plan_id"], key=carol, code=1)
    assert "not acknowledged" in refused.output
    (tmp_path / "acks.txt").write_text("\n".join(w["id"] + "  # " + w["change"] for w in plan["widenings"]))
    assert "approved" in gh("policy", "approve", ref, "--plan", plan["plan_id"], "--ack-file", str(tmp_path / "acks.txt"),
                            key=carol).output
    listed = json.loads(gh("policy", "list", "--json", key=carol).stdout)
    assert [(v["version"], v["state"], v["approvals"]) for v in listed] == [(version, "draft", ["person:carol@example.com"])]
    assert "Policy versions" in gh("policy", "list", key=carol).output
    applied = gh("policy", "apply", ref, key=bob)
    assert "applied" in applied.output and "no gateway worker is running" in applied.output
    status = json.loads(gh("policy", "status", "--json", key=carol).stdout)
    assert status["active"] == version and status["drift"] is False
    shown = json.loads(gh("policy", "show", ref, "--json", key=carol).stdout)
    assert shown["state"] == "active" and shown["message"] == "first"
    assert [a["approver"] for a in shown["approvals"]] == ["person:carol@example.com"]
    assert "Approvals" in gh("policy", "show", ref, key=carol).output
    text = (home / "policy.yaml").read_text()
    (tmp_path / "narrower.yaml").write_text(text[:text.index("grants:")] + "grants: []\n")
    diff = gh("policy", "diff", ref, str(tmp_path / "narrower.yaml"), key=carol).output
    assert "-grants:" in diff and "+grants: []" in diff and "no new access" in diff
    assert "rolled back" not in gh("policy", "rollback", "-m", "nothing before", key=bob, code=1).output
    glass = gh("policy", "break-glass", str(tmp_path / "narrower.yaml"), "--reason", "incident 12", "--ttl", "30m",
               key=bob)
    assert "BREAK-GLASS" in glass.output
    assert "BREAK-GLASS until" in gh("policy", "status", key=carol).output
    ended = gh("policy", "rollback", "-m", "incident over", key=bob)
    assert f"rolled back to {version}" in " ".join(ended.output.split())
    again = gh("policy", "break-glass", str(tmp_path / "narrower.yaml"), "--reason", "incident 13", key=bob, code=1)
    assert "limit" in again.output or "per" in again.output  # one per person per day
    unreviewed = json.loads(gh("policy", "status", "--json", key=carol).stdout)["break_glass_unreviewed"]
    assert [item["actor"] for item in unreviewed] == ["person:bob@example.com"]
    assert "approver" in gh("policy", "review-break-glass", str(unreviewed[0]["seq"]), "--note", "x", key=bob,
                            code=1).output
    gh("policy", "review-break-glass", str(unreviewed[0]["seq"]), "--note", "incident 12 handled", key=carol)
    assert json.loads(gh("policy", "status", "--json", key=carol).stdout)["break_glass_unreviewed"] == []
    assert "not a policy version" in gh("policy", "show", "nope", key=carol, code=1).output


def test_recovery_needs_two_people_and_is_loud(gh, home, monkeypatch):
    codes = [line for line in gh.started.stdout.splitlines() if line.startswith("ghr_")]
    assert len(codes) == 3
    assert "only for when none is left" in gh("recover", "--admin", "new@example.com", "--code", codes[0],
                                              "--code", codes[1], code=1).output  # root is still there
    store_sql("UPDATE people SET status = 'departed'")  # every identity-admin has left
    hook = Receiver()
    monkeypatch.setenv("GATEHOUSE_NOTIFY_WEBHOOK", hook.url)
    try:
        refused = gh("recover", "--admin", "new@example.com", "--code", codes[0], "--code", codes[0], code=1)
        assert "2 different valid recovery codes" in refused.output  # one person cannot do it alone
        recovered = gh("recover", "--admin", "new@example.com", "--code", codes[0], "--code", codes[2])
        assert "RECOVERY" in recovered.output
        assert [event["event"] for event in hook.received] == ["installation.recover"]
        assert all(code not in json.dumps(hook.received) for code in codes)
    finally:
        hook.close()
    key = [line for line in recovered.stdout.splitlines() if line.startswith("gth_")][0]
    assert json.loads(gh("whoami", "--json", key=key).stdout) == {
        "email": "new@example.com", "roles": ["identity-admin"], "key_id": key[4:16], "enrolment": False}
    log = json.loads(gh("audit", "log", "--json", key=key).stdout)
    assert "installation.recover_refused" in [e["action"] for e in log]
    assert log[-1]["action"] == "installation.recover" and log[-1]["actor"].startswith("local:")
    assert codes[1] not in json.dumps(log)
    store_sql("UPDATE people SET status = 'departed'")
    spent = gh("recover", "--admin", "other@example.com", "--code", codes[1], "--code", codes[2], code=1)
    assert "0 given were valid" in spent.output  # used codes are spent and the set was replaced
