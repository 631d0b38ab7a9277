"""Issue 25 through the command line, on SQLite and a real PostgreSQL server: promoting the
fallback of a granted alias, or tightening the primary's timeout so that it hands every request
on, is no longer "no new access". The plan names the move, approve refuses until it is
acknowledged by id, and the approval keeps what was acknowledged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatehouse.cli.client import LOCAL, ControlPlane, http_client
from gatehouse.cli.main import app
from gatehouse.core.config import Settings

runner = CliRunner()
POLICY = """\
version: 1
deployments:
  onprem: {engine: openai, url: 'http://127.0.0.1:9/v1', model: m, location: on-prem,
           data_classes: [public, internal, confidential, restricted]}
  cloud: {engine: openai, url: 'http://127.0.0.1:9/v2', model: m, location: cloud, data_classes: [public, internal]}
aliases:
  chat: {route: [onprem, cloud]}
grants:
  - {name: dev-chat, subjects: [{environment: dev}], aliases: [chat]}
"""


@pytest.fixture
def gh(home: Path, shared_models_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):
    """The command line on a fresh installation whose active policy is POLICY."""
    home.mkdir(parents=True)
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    for name in ("GATEHOUSE_ADMIN_KEY", "GATEHOUSE_URL", "GATEHOUSE_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", database_url)

    def run(*args: str, code: int = 0, key: str | None = None):
        if key is None:
            monkeypatch.delenv("GATEHOUSE_ADMIN_KEY", raising=False)
        else:
            monkeypatch.setenv("GATEHOUSE_ADMIN_KEY", key)
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, f"{args}: {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output
        return result

    run("init", "--admin", "root@example.com", "--team", "platform", "--save-profile")
    (home / "policy.yaml").write_text(POLICY)
    return run


def admin_key(gh, email: str, role: str) -> str:
    """A person with this role, signed in with the admin key they redeemed (as `login` does)."""
    gh("person", "add", email, "--team", "platform")
    gh("person", "grant-role", email, role)
    enrolment = gh("person", "admin-key", email, "--ttl", "1d").stdout.strip().splitlines()[-1]
    plane = ControlPlane(http_client(Settings.from_env(), LOCAL, enrolment))
    return str(plane.post("/admin/admin-keys/redeem", {"ttl": "1d"})["key"])


def test_a_promoted_fallback_and_a_tightened_timeout_need_acknowledgement(gh, home, tmp_path):
    bob, carol = admin_key(gh, "bob@example.com", "policy-admin"), admin_key(gh, "carol@example.com", "approver")
    first = json.loads(gh("policy", "propose", str(home / "policy.yaml"), "-m", "chat", "--json", key=bob).stdout)
    plan = json.loads(gh("policy", "plan", first["version"][7:19], "--json", key=carol).stdout)
    gh("policy", "approve", first["version"][7:19], "--plan", plan["plan_id"],
       *[arg for w in plan["widenings"] for arg in ("--ack", w["id"])], key=carol)
    gh("policy", "apply", first["version"][7:19], key=bob)

    promoted = tmp_path / "promoted.yaml"
    promoted.write_text(POLICY.replace("route: [onprem, cloud]", "route: [cloud, onprem]"))
    tightened = tmp_path / "tightened.yaml"
    tightened.write_text(POLICY.replace("data_classes: [public, internal, confidential, restricted]}",
                                        "data_classes: [public, internal, confidential, restricted],\n"
                                        "           timeouts: {first_token: 0.000001}}"))
    expected = {
        promoted: "traffic: chat public, internal → cloud (cloud) answers first; was tried after onprem; "
                  "first answers move from on-prem to cloud",
        tightened: "failover: onprem (on-prem) timeouts.first_token 60.0 → 1e-06 can hand chat requests on to cloud "
                   "(cloud) for public, internal"}
    for path, widening in expected.items():
        version = json.loads(gh("policy", "propose", str(path), "-m", path.stem, "--json", key=bob).stdout)["version"]
        ref = version[7:19]
        plan = json.loads(gh("policy", "plan", ref, "--json", key=carol).stdout)
        assert plan["no_new_access"] is False
        assert [w["change"] for w in plan["widenings"]] == [widening]
        printed = gh("policy", "plan", ref, key=carol).output
        assert plan["widenings"][0]["id"] in printed and "no new access" not in printed
        refused = gh("policy", "approve", ref, "--plan", plan["plan_id"], key=carol, code=1)
        assert "not acknowledged" in refused.output and plan["widenings"][0]["id"] in refused.output
        gh("policy", "approve", ref, "--plan", plan["plan_id"], "--ack", plan["widenings"][0]["id"], key=carol)
        shown = json.loads(gh("policy", "show", ref, "--json", key=carol).stdout)
        assert [a["acknowledged"] for a in shown["approvals"]] == [[{"id": plan["widenings"][0]["id"],
                                                                     "change": widening}]]
    assert json.loads(gh("policy", "plan", str(promoted), "--json", key=carol).stdout)["shares"][0]["first"] == "cloud"
