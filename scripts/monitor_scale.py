"""Threshold evaluation at scale, on a real PostgreSQL server.

Usage counts for 10,000 identities (a fifth of them active in any minute), 50 aliases and 20
deployments, from 4 workers, over the last 70 minutes — what a busy fleet writes — then one
evaluation of five thresholds (block rate per identity, error rate and p99 latency per alias,
upstream error rate per deployment, guardrail hits against the hour before). Also times one
worker's write of a minute's counts.

    .venv/bin/python scripts/monitor_scale.py [IDENTITIES]
"""

import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from timing import timed  # noqa: E402

from gatehouse.core.config import Settings
from gatehouse.monitoring.evaluate import evaluate
from gatehouse.monitoring.usage import COUNTS, LATENCY_BUCKETS, write_rows
from gatehouse.policy.loader import load_policy_text
from gatehouse.store.db import Database

from postgres import PostgresServer  # noqa: E402

WORKERS, MINUTES = 4, 70
POLICY = """\
version: 1
deployments:
  d0: {engine: openai, url: 'http://127.0.0.1:9/v1', model: m}
aliases:
  a0: {route: [d0]}
monitoring:
  thresholds:
    - {id: block-rate, metric: block_rate, per: identity, above: 0.05, window: 10m}
    - {id: errors, metric: error_rate, per: alias, above: 0.02, window: 10m}
    - {id: slow, metric: latency_p99, per: alias, above: 3, window: 10m}
    - {id: upstream, metric: upstream_error_rate, per: deployment, above: 0.02, window: 10m}
    - {id: hits-jump, metric: guardrail_hits, per: gateway, window: 10m, baseline: 1h, factor: 3}
"""


def row(rng: random.Random, minute: datetime, worker: int, scope: str, subject: str) -> dict:
    requests = rng.randint(1, 60)
    latency = [0] * (len(LATENCY_BUCKETS) + 1)
    for _ in range(requests):
        latency[rng.randint(2, 8)] += 1
    counts = dict(zip(COUNTS, (requests, rng.randint(0, 1), rng.randint(0, 2), rng.randint(0, 3), requests, 0),
                      strict=True))
    return {"minute": minute, "worker": f"host-{worker}:1", "scope": scope, "subject": subject, **counts,
            "latency": latency}


def main() -> None:
    identities = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rng = random.Random(7)
    server = PostgresServer()
    try:
        db = Database(server.create_database())
        db.upgrade()
        now = datetime.now(UTC).replace(second=30, microsecond=0)
        rows = []
        for back in range(MINUTES):
            minute = (now - timedelta(minutes=back)).replace(second=0)
            for worker in range(WORKERS):
                active = rng.sample(range(identities), identities // 5)
                rows += [row(rng, minute, worker, "identity", f"app-{i}") for i in active]
                rows += [row(rng, minute, worker, "alias", f"model-{i}") for i in range(50)]
                rows += [row(rng, minute, worker, "deployment", f"dep-{i}") for i in range(20)]
                rows.append(row(rng, minute, worker, "gateway", "*"))
        timed(f"stored {len(rows):,} usage rows", lambda: [write_rows(db, rows[i:i + 20_000])
                                                            for i in range(0, len(rows), 20_000)])
        one_minute = [r for r in rows if r["minute"] == rows[0]["minute"] and r["worker"] == "host-0:1"]
        timed(f"one worker's minute rewritten ({len(one_minute):,} rows)", lambda: write_rows(db, one_minute))
        loaded = load_policy_text(POLICY)
        settings = Settings(Path("/tmp"), db.url, Path("/tmp/p.yaml"), timedelta(days=1), 1 << 20)
        thresholds = loaded.document.monitoring.thresholds
        opened = timed("evaluation of 5 thresholds", lambda: evaluate(db, thresholds, loaded.version, settings, now=now))
        print(f"incidents opened: {len(opened)}")
        timed("second evaluation (incidents exist)", lambda: evaluate(db, thresholds, loaded.version, settings,
                                                                      now=now + timedelta(seconds=15)))
        db.dispose()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
