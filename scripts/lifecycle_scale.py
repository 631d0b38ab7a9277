"""Findings, the credential report and the key table at scale, on a real PostgreSQL server.

100,000 identities (1,000 owners, 90% with a backup owner), 200,000 keys with spread-out
ages and last uses, 200,000 decision records in the 30-day window, and a policy with 50
team grants; then times `compute_findings`, `credential_report` (and its CSV), and measures
the memory of a gateway worker's in-memory key table loaded from scratch.

    .venv/bin/python scripts/lifecycle_scale.py [IDENTITIES]
"""

import random
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from timing import timed  # noqa: E402

from gatehouse.core.keyformat import generate_key, hash_secret
from gatehouse.oversight.findings import REPORT_COLUMNS, as_csv, compute_findings, credential_report
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.policy.loader import load_policy_text
from gatehouse.runtime.keytable import KeyTable
from gatehouse.store.db import Database, bump_revision
from gatehouse.store.models import Credential, DecisionRecord, Identity, Person

from postgres import PostgresServer  # noqa: E402

PEPPER = b"scale-pepper"
TEAMS = [f"team-{i}" for i in range(50)]
ALIASES = [f"model-{i}" for i in range(20)]


def policy() -> CompiledPolicy:
    grants = "\n".join(f"  - {{name: g{i}, subjects: [{{team: {team}}}], aliases: [{', '.join(random.sample(ALIASES, 4))}]}}"
                       for i, team in enumerate(TEAMS))
    aliases = "\n".join(f"  {alias}: {{route: [mock]}}" for alias in ALIASES)
    return CompiledPolicy(load_policy_text(
        f"version: 1\ndeployments:\n  mock: {{engine: openai, url: 'http://127.0.0.1:9/v1', model: m}}\n"
        f"aliases:\n{aliases}\ngrants:\n{grants}\n"))


def populate(db: Database, identities: int) -> None:
    now = datetime.now(UTC)
    rng = random.Random(1)
    with db.write() as session:
        revision = bump_revision(session)
        session.execute(insert(Person), [{"id": i + 1, "email": f"owner{i}@example.com", "team": TEAMS[i % 50],
                                          "status": "active", "created_at": now, "revision": revision}
                                         for i in range(1000)])
    batch = 10_000
    for start in range(0, identities, batch):
        rows, keys, records = [], [], []
        for n in range(start, min(start + batch, identities)):
            owner = n % 1000 + 1
            rows.append({"id": n + 1, "name": f"svc-{n}", "owner_id": owner,
                         "backup_owner_id": (owner % 1000) + 1 if rng.random() < 0.9 else None,
                         "team": TEAMS[n % 50], "environment": "prod", "labels": {}, "status": "active",
                         "data_clearance": "internal", "review_due_at": now + timedelta(days=rng.randint(-30, 90)),
                         "created_at": now - timedelta(days=rng.randint(0, 400)), "created_by": "scale",
                         "revision": 1})
            for _ in range(2):
                key = generate_key()
                created = now - timedelta(days=rng.randint(0, 200))
                used = now - timedelta(days=rng.randint(0, 120)) if rng.random() < 0.8 else None
                keys.append({"id": key.key_id, "identity_id": n + 1, "secret_hash": hash_secret(PEPPER, key),
                             "scopes": None, "status": "active", "created_at": created, "created_by": "scale",
                             "expires_at": now + timedelta(days=rng.randint(1, 90)), "last_used_at": used,
                             "last_model": rng.choice(ALIASES) if used else None, "revision": 1})
                if used and used > now - timedelta(days=30):
                    records.append({"request_id": f"req_{key.key_id}", "ts": used, "identity": f"svc-{n}",
                                    "key_id": key.key_id, "endpoint": "chat/completions", "alias": rng.choice(ALIASES),
                                    "deployment": "mock", "fallbacks": [], "policy_version": "v", "status": 200,
                                    "stream": False, "latency_ms": 1.0})
        with db.write() as session:
            session.execute(insert(Identity), rows)
            session.execute(insert(Credential), keys)
            session.execute(insert(DecisionRecord), records)


def main(identities: int) -> None:
    server = PostgresServer()
    try:
        db = Database(server.create_database())
        db.upgrade()
        timed(f"populate {identities:,} identities, {2 * identities:,} keys", lambda: populate(db, identities))
        compiled = policy()
        found = timed("gatehouse findings (compute_findings)", lambda: compute_findings(db, compiled))
        print(f"  {len(found):,} findings")
        rows = timed("credential report (rows)", lambda: credential_report(db))
        text = timed("credential report (CSV)", lambda: as_csv(rows, REPORT_COLUMNS))
        print(f"  {len(rows):,} keys, {len(text) / 1e6:.1f} MB of CSV")
        timed("key table load from scratch (a worker starting)", lambda: KeyTable(PEPPER).refresh(db))
        tracemalloc.start()
        table = KeyTable(PEPPER)
        table.refresh(db)
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"key table: {len(table):,} keys, {current / 1e6:.0f} MB "
              f"({current / len(table):.0f} bytes a key, identities included)")
        db.dispose()
    finally:
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
