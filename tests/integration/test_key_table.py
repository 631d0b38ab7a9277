"""The data plane's in-memory key table, loaded incrementally from the store."""

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import select

from gatehouse.api.errors import from_domain
from gatehouse.core.decision import RequestRecord
from gatehouse.core.errors import Unauthenticated
from gatehouse.core.keyformat import generate_key
from gatehouse.identity import bootstrap, service
from gatehouse.runtime.keytable import KeyTable
from gatehouse.runtime.records import RecordWriter
from gatehouse.runtime.spool import Spool
from gatehouse.store.models import Credential, DecisionRecord

PEPPER = b"pepper"
ACTOR = "person:root@example.com"  # the bootstrapped identity-admin


@pytest.fixture
def setup(db):
    bootstrap.bootstrap(db, "local:init", "root@example.com", pepper=PEPPER, ttl=timedelta(hours=1))
    service.add_person(db, ACTOR, "alice@example.com", team="platform")
    service.create_identity(db, ACTOR, "app", "alice@example.com", environment="prod",
                            exempt_environments=frozenset({"prod"}))
    credential, key = service.issue_key(db, ACTOR, "app", pepper=PEPPER, ttl=timedelta(days=1),
                                        max_ttl=timedelta(days=90), scopes=["a"])
    table = KeyTable(PEPPER)
    assert table.refresh(db)
    return db, table, credential, key


def code_of(table, header):
    with pytest.raises(Unauthenticated) as info:
        table.authenticate(header)
    assert from_domain(info.value).status == 401
    return info.value.code


def test_valid_key_authenticates_to_its_identity(setup):
    db, table, credential, key = setup
    principal = table.authenticate(f"Bearer {key}")
    assert principal.identity.name == "app" and principal.identity.environment == "prod"
    assert principal.key_id == credential.id and principal.scopes == {"a"}
    assert credential.id in table.last_used


def test_refresh_is_a_no_op_without_changes(setup):
    db, table, *_ = setup
    assert table.refresh(db) is False


def test_bad_keys_get_distinct_codes(setup):
    db, table, credential, key = setup
    assert code_of(table, None) == "missing_api_key"
    assert code_of(table, "Basic abc") == "invalid_api_key"
    assert code_of(table, "Bearer " + key[:-1] + ("x" if key[-1] != "x" else "y")) == "invalid_api_key"
    assert code_of(table, f"Bearer {generate_key().text}") == "invalid_api_key"  # well-formed, never issued


def test_revocation_and_suspension_are_picked_up_on_refresh(setup):
    db, table, credential, key = setup
    service.revoke_key(db, ACTOR, credential.id)
    assert table.refresh(db)
    assert code_of(table, f"Bearer {key}") == "revoked_api_key"
    _, second = service.issue_key(db, ACTOR, "app", pepper=PEPPER, ttl=timedelta(days=1), max_ttl=timedelta(days=90))
    table.refresh(db)
    assert table.authenticate(f"Bearer {second}").identity.name == "app"
    service.change_identity_status(db, ACTOR, "app", "suspend")
    table.refresh(db)
    assert code_of(table, f"Bearer {second}") == "identity_not_active"


def test_expired_key_is_refused(setup):
    db, table, *_ = setup
    _, short = service.issue_key(db, ACTOR, "app", pepper=PEPPER, ttl=timedelta(seconds=1), max_ttl=timedelta(days=90))
    table.refresh(db)
    table.authenticate(f"Bearer {short}")
    time.sleep(1.1)
    assert code_of(table, f"Bearer {short}") == "expired_api_key"


def test_wrong_pepper_refuses_every_key(setup):
    db, _, _, key = setup
    table = KeyTable(b"another pepper")
    table.refresh(db)
    assert code_of(table, f"Bearer {key}") == "invalid_api_key"


def decision(credential, **overrides):
    """A decision record as the gateway builds one."""
    fields = {"request_id": "req_x", "ts": datetime.now(UTC), "identity": "app", "key_id": credential.id,
              "endpoint": "chat/completions", "alias": "a", "deployment": "d", "fallbacks": [],
              "policy_version": "sha256:x", "status": 200, "error_code": None, "stream": False, "prompt_tokens": 1,
              "completion_tokens": 1, "latency_ms": 1.0, "ttft_ms": 1.0, **overrides}
    return RequestRecord(**fields)


def writer_for(db, tmp_path, **kwargs):
    spool = Spool(tmp_path / "spool", "host:1")
    spool.open()
    return RecordWriter(db, spool, flush_interval=60, last_used_interval=3600, **kwargs)


async def test_records_and_last_used_are_written_in_batches(setup, tmp_path):
    db, table, credential, key = setup
    writer = writer_for(db, tmp_path)
    writer.start(table.take_last_used)
    for index in range(3):
        writer.add(decision(credential, request_id=f"req_{index}", fallbacks=["x=http_500"], completion_tokens=4))
    table.authenticate(f"Bearer {key}")
    with db.read() as session:
        assert session.execute(select(DecisionRecord)).first() is None  # nothing written per request
    await writer.stop(table.take_last_used)  # shutdown drains everything
    writer.spool.close()
    with db.read() as session:
        records = session.execute(select(DecisionRecord).order_by(DecisionRecord.request_id)).scalars().all()
        assert [r.request_id for r in records] == ["req_0", "req_1", "req_2"]
        assert records[0].fallbacks == ["x=http_500"] and records[0].completion_tokens == 4
        assert session.get(Credential, credential.id).last_used_at is not None
    assert not table.refresh(db)  # last-used writes do not force workers to reload
    assert not list((tmp_path / "spool").glob("*.spool"))  # every segment stored, then deleted


async def test_one_bad_record_does_not_hold_back_the_others_and_is_set_aside_not_dropped(setup, tmp_path):
    db, table, credential, _ = setup
    writer = writer_for(db, tmp_path)
    good = decision(credential, request_id="req_good")
    bad = replace(good, request_id="req_bad", error_code="x" * 500)  # longer than the column allows
    writer.add(bad)
    writer.add(good)
    writer.drain()
    with db.read() as session:
        stored = session.execute(select(DecisionRecord.request_id)).scalars().all()
    if db.engine.dialect.name == "sqlite":  # SQLite does not enforce a VARCHAR's length: both are stored
        assert sorted(stored) == ["req_bad", "req_good"]
        return
    assert stored == ["req_good"] and writer.set_aside == 1
    kept = (tmp_path / "spool" / "rejected").glob("*.jsonl")
    assert [orjson.loads(line)["request_id"] for path in kept for line in path.read_bytes().splitlines()] == ["req_bad"]


async def test_last_model_is_the_latest_successful_alias(setup, tmp_path):
    db, table, credential, key = setup
    writer = writer_for(db, tmp_path)
    record = decision(credential, request_id="req_a")
    table.authenticate(f"Bearer {key}")
    writer.note_used(table.take_last_used())
    await writer.flush_last_used()  # the key's time is written before its request finishes
    writer.add(replace(record, alias="a"))
    writer.add(replace(record, request_id="req_b", alias="failed-model", status=502))  # failures don't count
    writer.drain()
    with db.read() as session:
        stored = session.get(Credential, credential.id)
        assert stored.last_model == "a" and stored.last_used_at is not None
