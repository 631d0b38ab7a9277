"""Gateway workers reporting in: which version each enforces, and ``policy status`` (drift).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from gatehouse.core.clock import as_utc, utcnow
from gatehouse.policy.change_control import unreviewed_break_glass
from gatehouse.policy.versions import activation_dict, baseline_of, current_activation
from gatehouse.store.db import Database
from gatehouse.store.models import (
    GatewayWorker,
    PolicyActivation,
)

HEARTBEAT_INTERVAL = 5.0  # seconds


GONE_AFTER = timedelta(seconds=20)


def heartbeat(db: Database, worker: str, version: str | None, problem: str | None, started: datetime) -> None:
    now = utcnow()
    with db.write() as session:
        row = session.get(GatewayWorker, worker)
        if row is None:
            session.add(GatewayWorker(id=worker, policy_version=version, problem=problem, started_at=started, seen_at=now))
        else:
            row.policy_version, row.problem, row.seen_at = version, problem, now
        session.execute(delete(GatewayWorker).where(GatewayWorker.seen_at < now - timedelta(days=1)))


def forget_worker(db: Database, worker: str) -> None:
    with db.write() as session:
        session.execute(delete(GatewayWorker).where(GatewayWorker.id == worker))


def status(db: Database) -> dict[str, Any]:
    """The active version, and per live worker what it enforces; ``drift`` when any differs;
    every break-glass activation no other approver has reviewed yet."""
    now = utcnow()
    with db.read() as session:
        current = current_activation(session)
        workers = session.execute(select(GatewayWorker).order_by(GatewayWorker.id)).scalars().all()
        history = session.execute(select(PolicyActivation).order_by(PolicyActivation.seq.desc()).limit(10)).scalars().all()
        unreviewed = unreviewed_break_glass(session)
    active = current.version if current else None
    rows = []
    for worker in workers:
        seen = as_utc(worker.seen_at)
        if now - seen > GONE_AFTER:
            state = "gone"
        elif worker.problem:
            state = "error"
        elif worker.policy_version != active:
            state = "drift"
        else:
            state = "in sync"
        rows.append({"worker": worker.id, "policy_version": worker.policy_version, "state": state,
                     "problem": worker.problem, "seen_seconds_ago": round((now - seen).total_seconds(), 1),
                     "started_at": as_utc(worker.started_at)})
    live = [row for row in rows if row["state"] != "gone"]
    return {
        "active": active,
        "activation": activation_dict(current) if current else None,
        "break_glass": current is not None and current.kind == "break-glass",
        "break_glass_unreviewed": unreviewed,
        "baseline": baseline_of(current),
        "workers": rows,
        "drift": any(row["state"] in ("drift", "error") for row in live),
        "history": [activation_dict(row) for row in history],
    }
