"""People, identities and keys on SQLite and on a real PostgreSQL server."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gatehouse import audit
from gatehouse.core.errors import Conflict, GatehouseError, NotFound
from gatehouse.identity import bootstrap, governance, service
from gatehouse.store.models import AuditEntry, Credential, Identity

PEPPER = b"pepper"
MAX_TTL = timedelta(days=90)
ACTOR = "person:root@example.com"  # the bootstrapped identity-admin
APPROVER = "person:carol@example.com"  # an identity-admin who never held billing-bot


def issue(db, identity, ttl=timedelta(days=30), scopes=None):
    return service.issue_key(db, ACTOR, identity, pepper=PEPPER, ttl=ttl, max_ttl=MAX_TTL, scopes=scopes)


@pytest.fixture
def rooted(db):
    bootstrap.bootstrap(db, "local:init", "root@example.com", pepper=PEPPER, ttl=timedelta(hours=1))
    return db


@pytest.fixture
def owned(rooted):
    db = rooted
    service.add_person(db, ACTOR, "Alice@Example.com", team="platform")
    service.add_person(db, ACTOR, "bob@example.com", team="platform")
    service.add_person(db, ACTOR, "carol@example.com", team="platform")
    governance.change_role(db, ACTOR, "carol@example.com", "identity-admin", True)
    created = service.create_identity(db, ACTOR, "billing-bot", "alice@example.com", purpose="summaries",
                                      backup_owner_email="bob@example.com", labels={"tier": "gold"})
    assert created.status == "pending"  # labels select grants: another identity-admin approves (issue 14)
    governance.decide_identity(db, APPROVER, "billing-bot", approve=True)
    return db


def audit_actions(db):
    with db.read() as session:
        return [e.action for e in session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()]


def test_identity_lifecycle_is_stored_and_audited(owned):
    info = service.describe_identity(owned, "billing-bot")
    assert info["owner"] == "alice@example.com" and info["backup_owner"] == "bob@example.com"
    assert info["team"] == "platform" and info["environment"] == "dev" and info["labels"] == {"tier": "gold"}
    assert info["status"] == "active" and info["review_due_at"] is not None
    credential, key = issue(owned, "billing-bot", scopes=["chat-small"])
    assert key.startswith(f"gth_{credential.id}_")
    with owned.read() as session:
        stored = session.get(Credential, credential.id)
        assert stored.secret_hash != key and key[17:49] not in stored.secret_hash
        assert stored.scopes == ["chat-small"]
    service.revoke_key(owned, ACTOR, credential.id, "test")
    assert service.list_keys(owned, "billing-bot")[0]["status"] == "revoked"
    service.change_identity_status(owned, ACTOR, "billing-bot", "suspend")
    service.change_identity_status(owned, ACTOR, "billing-bot", "resume")
    assert audit_actions(owned) == ["person.add", "role.grant", "admin_key.issue", "installation.bootstrap",
                                    "person.add", "person.add", "person.add", "role.grant", "identity.create",
                                    "identity.approve", "key.issue", "key.revoke", "identity.suspend", "identity.resume"]
    with owned.read() as session:
        assert audit.verify(session).ok


def test_audit_entries_hold_no_secrets(owned):
    _, key = issue(owned, "billing-bot")
    with owned.read() as session:
        texts = [e.details + e.target for e in session.execute(select(AuditEntry)).scalars()]
    secret = key[17:49]
    assert texts and not any(secret in text or key in text for text in texts)


def test_retiring_revokes_every_key(owned):
    first, _ = issue(owned, "billing-bot")
    second, _ = issue(owned, "billing-bot")
    service.change_identity_status(owned, ACTOR, "billing-bot", "retire", "project ended")
    assert {k["status"] for k in service.list_keys(owned, "billing-bot")} == {"revoked"}
    with pytest.raises(GatehouseError, match="retired"):
        issue(owned, "billing-bot")
    with pytest.raises(GatehouseError, match="cannot resume"):
        service.change_identity_status(owned, ACTOR, "billing-bot", "resume")


def test_owner_must_exist_and_be_active(rooted):
    db = rooted
    with pytest.raises(NotFound, match="no person"):
        service.create_identity(db, ACTOR, "orphan", "ghost@example.com")
    service.add_person(db, ACTOR, "carol@example.com")
    with pytest.raises(GatehouseError, match="someone other than the owner"):
        service.create_identity(db, ACTOR, "x", "carol@example.com", backup_owner_email="carol@example.com")


@pytest.mark.parametrize("call, message", [
    (lambda db: service.add_person(db, ACTOR, "not-an-email"), "invalid e-mail"),
    (lambda db: service.add_person(db, ACTOR, "alice@example.com"), "already exists"),
    (lambda db: service.create_identity(db, ACTOR, "Bad Name", "alice@example.com"), "invalid identity name"),
    (lambda db: service.create_identity(db, ACTOR, "billing-bot", "alice@example.com"), "already exists"),
    (lambda db: service.create_identity(db, ACTOR, "y", "alice@example.com", data_clearance="secret"), "clearance"),
    (lambda db: issue(db, "billing-bot", ttl=timedelta(days=91)), "over the maximum"),
    (lambda db: issue(db, "nobody"), "no identity"),
    (lambda db: issue(db, "billing-bot", scopes=["has space"]), "invalid scope"),
    (lambda db: service.revoke_key(db, ACTOR, "short"), "invalid key id"),
    (lambda db: service.revoke_key(db, ACTOR, "AAAAAAAAAAAA"), "no key"),
])
def test_bad_input_is_refused_without_changing_anything(owned, call, message):
    before = audit_actions(owned)
    with owned.read() as session:
        identities = session.execute(select(func.count()).select_from(Identity)).scalar_one()
    with pytest.raises((GatehouseError, Conflict, NotFound), match=message):
        call(owned)
    assert audit_actions(owned) == before
    with owned.read() as session:
        assert session.execute(select(func.count()).select_from(Identity)).scalar_one() == identities


def test_a_failing_audit_write_rolls_the_change_back(owned, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(audit, "append", broken)
    with pytest.raises(RuntimeError):
        issue(owned, "billing-bot")
    with pytest.raises(RuntimeError):
        service.change_identity_status(owned, ACTOR, "billing-bot", "suspend")
    monkeypatch.undo()
    assert service.list_keys(owned, "billing-bot") == []
    assert service.describe_identity(owned, "billing-bot")["status"] == "active"


def test_racing_changes_see_each_other(owned):
    """Every write takes the change lock before its checks: of eight concurrent revocations of
    one key exactly one wins, and a retire racing a resume never leaves the identity active."""
    import threading

    credential, _ = issue(owned, "billing-bot")
    barrier = threading.Barrier(8)
    outcomes = []

    def revoke():
        barrier.wait()
        try:
            service.revoke_key(owned, ACTOR, credential.id)
            outcomes.append("revoked")
        except GatehouseError:
            outcomes.append("refused")

    threads = [threading.Thread(target=revoke) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["revoked"]
    assert audit_actions(owned).count("key.revoke") == 1

    service.change_identity_status(owned, ACTOR, "billing-bot", "suspend")
    barrier = threading.Barrier(2)

    def act(action):
        barrier.wait()
        try:
            service.change_identity_status(owned, ACTOR, "billing-bot", action)
        except GatehouseError:
            pass

    racers = [threading.Thread(target=act, args=(action,)) for action in ("retire", "resume")]
    for thread in racers:
        thread.start()
    for thread in racers:
        thread.join()
    # either resume then retire, or retire then a refused resume: retired in both orders
    assert service.describe_identity(owned, "billing-bot")["status"] == "retired"
