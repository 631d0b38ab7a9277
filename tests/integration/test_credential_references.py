"""A proposal whose deployment credential names one of Gatehouse's own files — the pepper, the
audit signing key, anything in $GATEHOUSE_HOME but credentials/ — is refused when proposed
(and at break-glass), however the path is spelt, through the admin API and the command line;
nothing is stored and no secret appears in the answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from gatehouse.app.control import create_control_app
from gatehouse.cli.client import LOCAL, ControlPlane, http_client
from gatehouse.cli.main import app as cli_app
from gatehouse.core.config import Settings
from gatehouse.identity import governance, service
from gatehouse.identity.bootstrap import bootstrap
from gatehouse.store.db import Database
from gatehouse.store.models import AuditEntry, PolicyVersion

from helpers import own_admin_key

ROOT = "root@example.com"
BOB = "bob@example.com"


def policy(credential_file: str) -> str:
    return ("version: 1\ndeployments:\n"
            f"  gpu: {{engine: vllm, url: 'http://127.0.0.1:9/v1', model: m, credential: {{file: {json.dumps(credential_file)}}}}}\n"
            "aliases:\n  chat: {route: [gpu]}\ngrants: []\n")


@pytest.fixture
def installation(home: Path, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Gatehouse's home with its pepper and signing key, a signing key kept outside it too,
    HOME such that ``~/home`` is $GATEHOUSE_HOME, and a link in credentials/ to the pepper."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", database_url)
    monkeypatch.setenv("GATEHOUSE_NOTIFY_WEBHOOK", "http://127.0.0.1:9/unreachable")
    for name in ("GATEHOUSE_ADMIN_KEY", "GATEHOUSE_URL", "GATEHOUSE_ACTOR", "GATEHOUSE_AUDIT_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    (home / "credentials").mkdir(parents=True)
    Settings.from_env().pepper()  # the file, as the first command makes it
    (home / "credentials" / "innocent-looking").symlink_to(home / "pepper")
    (home / "credentials" / "vllm").write_text("upstream-secret\n")
    elsewhere = tmp_path / "keys" / "audit-signing-key"  # made by Gatehouse on first use, where it is set
    elsewhere.parent.mkdir()
    return {"home": home, "elsewhere": elsewhere}


REFUSED = {  # how the reference is spelt → what the refusal says
    "{home}/pepper": "are Gatehouse's own",
    "{home}/audit-signing-key": "are Gatehouse's own",
    "{home}/credentials/../pepper": "are Gatehouse's own",
    "{home}/credentials/innocent-looking": "are Gatehouse's own",  # a link to the pepper
    "~/home/pepper": "are Gatehouse's own",
    "~/home/credentials/../audit-signing-key": "are Gatehouse's own",
    "pepper": "must be an absolute path",
    "home/pepper": "must be an absolute path",
}


def spelt(template: str, home: Path) -> str:
    return template.format(home=home)


def no_secret_in(text: str, home: Path) -> None:
    for own in (home / "pepper", home / "audit-signing-key"):
        if own.exists():
            assert own.read_text().strip() not in text


def stored(db_url: str) -> tuple[int, int]:
    db = Database(db_url)
    try:
        with db.read() as session:
            versions = session.scalar(select(func.count()).select_from(PolicyVersion)) or 0
            proposals = session.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.action == "policy.propose")) or 0
        return versions, proposals
    finally:
        db.dispose()


@pytest.fixture
def api(installation, db: Database, monkeypatch) -> Callable[..., object]:
    """The admin API as bob, a policy-admin, sees it."""
    settings = Settings.from_env()
    root = bootstrap(db, "local:init", ROOT, pepper=settings.pepper(), ttl=timedelta(days=1)).admin_key
    assert root
    service.add_person(db, f"person:{ROOT}", BOB, team="platform")
    governance.change_role(db, f"person:{ROOT}", BOB, "policy-admin", True)
    key = own_admin_key(db, f"person:{ROOT}", BOB, settings.pepper())
    client = TestClient(create_control_app(settings), headers={"authorization": f"Bearer {key}"})
    return lambda method, path, body=None: client.request(method, f"/admin/policy{path}", json=body)


@pytest.mark.parametrize("template", sorted(REFUSED))
def test_the_api_refuses_a_proposal_naming_gatehouses_own_files(api, installation, database_url, template):
    home = installation["home"]
    answer = api("POST", "/versions", {"source": policy(spelt(template, home)), "message": "send the pepper upstream"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith("gpu: ")
    assert REFUSED[template] in error["message"]
    no_secret_in(answer.text, home)
    assert stored(database_url) == (0, 0)
    glass = api("POST", "/break-glass", {"source": policy(spelt(template, home)), "reason": "INC-1", "ttl": "1h"})
    assert glass.status_code == 400 and REFUSED[template] in glass.json()["error"]["message"]


@pytest.fixture
def key_elsewhere(installation, monkeypatch) -> Path:
    """The installation's signing key kept outside its home, set before the API starts."""
    monkeypatch.setenv("GATEHOUSE_AUDIT_SIGNING_KEY", str(installation["elsewhere"]))
    return installation["elsewhere"]


def test_the_api_refuses_the_signing_key_kept_outside_the_home(key_elsewhere, api, database_url):
    answer = api("POST", "/versions", {"source": policy(str(key_elsewhere)), "message": "send the signing key"})
    assert answer.status_code == 400 and "it is Gatehouse's own" in answer.json()["error"]["message"]
    assert stored(database_url) == (0, 0)


def test_the_api_accepts_a_file_in_credentials(api, installation, database_url):
    answer = api("POST", "/versions", {"source": policy(str(installation["home"] / "credentials" / "vllm")),
                                       "message": "the vLLM pool"})
    assert answer.status_code == 201, answer.text
    assert stored(database_url) == (1, 1)


runner = CliRunner()


@pytest.fixture
def gh(installation, shared_models_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """The command line on a fresh installation (as tests/integration/test_cli.py's)."""
    home = installation["home"]
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)

    def run(*args: str, code: int = 0, key: str | None = None):
        if key is None:
            monkeypatch.delenv("GATEHOUSE_ADMIN_KEY", raising=False)
        else:
            monkeypatch.setenv("GATEHOUSE_ADMIN_KEY", key)
        result = runner.invoke(cli_app, list(args))
        assert result.exit_code == code, f"{args}: {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output
        return result

    run("init", "--admin", ROOT, "--team", "platform", "--save-profile")
    run("person", "add", BOB, "--team", "platform")
    run("person", "grant-role", BOB, "policy-admin")
    enrolment = run("person", "admin-key", BOB, "--ttl", "1d").stdout.strip().splitlines()[-1]
    plane = ControlPlane(http_client(Settings.from_env(), LOCAL, enrolment))
    bob = str(plane.post("/admin/admin-keys/redeem", {"ttl": "1d"})["key"])
    return lambda *args, code=0: run(*args, code=code, key=bob)


@pytest.mark.parametrize("template", ["{home}/pepper", "{home}/audit-signing-key", "{home}/credentials/innocent-looking",
                                      "~/home/pepper", "pepper"])
def test_the_cli_refuses_a_proposal_naming_gatehouses_own_files(gh, installation, database_url, tmp_path, template):
    home = installation["home"]
    before = stored(database_url)
    (tmp_path / "leaky.yaml").write_text(policy(spelt(template, home)))
    refused = gh("policy", "propose", str(tmp_path / "leaky.yaml"), "-m", "send it upstream", code=1).output
    assert "gpu: " in refused and REFUSED[template] in " ".join(refused.split())
    no_secret_in(refused, home)
    assert stored(database_url) == before
    (tmp_path / "fine.yaml").write_text(policy(str(home / "credentials" / "vllm")))
    assert json.loads(gh("policy", "propose", str(tmp_path / "fine.yaml"), "-m", "the pool", "--json").stdout)["created"]
