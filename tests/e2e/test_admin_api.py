"""The admin API through a real gateway: people's admin keys and roles; workload keys refused."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from gatehouse.identity import governance, lifecycle, service
from gatehouse.identity.admin_keys import revoke_admin_key

from gateway_support import ACTOR  # the installation's bootstrapped identity-admin
from helpers import own_admin_key

PEPPER = b"e2e-pepper"


@pytest.fixture(scope="module")
def admins(gateway_home, dev_key):
    db = gateway_home.db
    keys = {}
    for name in ("idadmin", "auditor", "norole", "leaver"):
        service.add_person(db, ACTOR, f"{name}@example.com", team="security")
        text = own_admin_key(db, ACTOR, f"{name}@example.com", PEPPER)
        keys[name] = (SimpleNamespace(id=text[4:16]), text)  # (the key's row as far as tests need it, the key)
    governance.change_role(db, ACTOR, "idadmin@example.com", "identity-admin", True)
    for name in ("auditor", "leaver"):
        governance.change_role(db, "person:idadmin@example.com", f"{name}@example.com", "auditor", True)
    return keys


def get(gateway, path, key=None):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{gateway.url}{path}", headers=headers)


def test_an_auditor_reads_the_inventory_findings_and_credential_report(gateway, admins, dev_key):
    key = admins["auditor"][1]
    inventory = get(gateway, "/admin/inventory", key)
    assert inventory.status_code == 200
    rows = {(row["kind"], row["name"]): row for row in inventory.json()["inventory"]}
    assert rows[("workload-identity", "e2e-app")]["owner"] == "owner@example.com"
    assert rows[("deployment-credential", "mock-ok")]["reference"] == "env:MOCK_UPSTREAM_KEY"
    assert rows[("admin-principal", "auditor@example.com")]["grants"] == ["auditor"]
    assert "upstream-secret-for-tests" not in inventory.text  # a credential's reference, never its value
    csv = get(gateway, "/admin/inventory?format=csv", key)
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("kind,name,owner,")
    findings = get(gateway, "/admin/findings", key).json()["findings"]
    assert any(f["kind"] == "no_backup_owner" and f["subject"] == "identity:e2e-app" for f in findings)
    report = get(gateway, "/admin/credential-report?format=csv", key).text.splitlines()
    assert report[0].startswith("key_id,identity,owner") and any(dev_key[4:16] in line for line in report)
    assert dev_key not in "\n".join(report)


@pytest.mark.parametrize("who, status, code", [
    ("workload", 403, "admin_forbidden"),
    ("nobody", 401, "missing_admin_key"),
    ("norole", 403, "admin_forbidden"),
    ("garbage", 401, "invalid_admin_key"),
])
def test_who_is_refused(gateway, admins, dev_key, who, status, code):
    key = {"workload": dev_key, "nobody": None, "norole": admins["norole"][1], "garbage": "gth_nope"}[who]
    response = get(gateway, "/admin/inventory", key)
    assert response.status_code == status and response.json()["error"]["code"] == code


def test_an_admin_key_never_reaches_a_model(gateway, admins):
    response = httpx.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {admins['idadmin'][1]}"},
                          json={"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_a_bad_format_is_a_400(gateway, admins):
    response = get(gateway, "/admin/findings?format=csv", admins["auditor"][1])
    assert response.status_code == 400 and response.json()["error"]["param"] == "format"


def test_revoked_and_departed_admin_keys_stop(gateway, gateway_home, admins):
    row, key = admins["leaver"]
    assert get(gateway, "/admin/inventory", key).status_code == 200
    report = lifecycle.depart_person(gateway_home.db, ACTOR, "leaver@example.com")
    assert report.admin_keys_revoked == [row.id]
    assert get(gateway, "/admin/inventory", key).status_code == 401
    auditor_row, auditor_key = admins["auditor"]
    revoke_admin_key(gateway_home.db, ACTOR, auditor_row.id)
    assert get(gateway, "/admin/inventory", auditor_key).status_code == 401


def test_an_identity_admin_reports_a_leak_with_their_admin_key(gateway, admins, fresh_key):
    key = fresh_key()
    response = httpx.post(f"{gateway.url}/admin/leaks", json=[{"token": key, "type": "t", "url": "ticket-123"}],
                          headers={"authorization": f"Bearer {admins['idadmin'][1]}"})
    assert response.status_code == 200 and response.json()[0]["label"] == "true_positive"
    refused = httpx.post(f"{gateway.url}/admin/leaks", json=[{"token": key, "type": "t"}],
                         headers={"authorization": f"Bearer {admins['norole'][1]}"})
    assert refused.status_code == 403
