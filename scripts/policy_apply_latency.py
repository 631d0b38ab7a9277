"""Time from `policy apply` committing to every gateway worker enforcing the new version.

A real `gatehouse serve --workers N` (default 2) in front of the mock upstream, under a light
closed-loop load (4 clients) so the workers are busy; per trial the active version flips
between two policies that route the alias to different deployments (each switch builds a new
engine and retires the old one once its requests finish). The figure is from the apply's
commit to the last worker's heartbeat naming the new version (written right after its swap,
so an upper bound on when it enforced it). Any request that failed during the switches is
counted: there should be none.

    .venv/bin/python scripts/policy_apply_latency.py [TRIALS] [WORKERS]
"""

import os
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx

from gatehouse.bench.processes import start_gateway, start_mock_upstream
from gatehouse.bench.stats import percentile
from gatehouse.identity import governance, service
from gatehouse.policy import change_control
from gatehouse.policy import workers as policy_workers
from gatehouse.policy.loader import load_policy_text
from gatehouse.store.db import Database

PEPPER = "apply-latency-pepper"
BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def policy(mock: str, deployment: str) -> str:
    return (f"version: 1\ndeployments:\n  {deployment}: {{engine: openai, url: '{mock}/v1', model: m}}\n"
            f"aliases:\n  chat: {{route: [{deployment}]}}\n"
            "change_control: {approvers: 0}\n"  # single-person mode: this measures propagation, not approval
            "grants:\n  - {name: all, subjects: [{environment: dev}], aliases: [chat]}\n")


def main(trials: int, workers: int) -> None:
    scratch = Path(tempfile.mkdtemp())
    mock = start_mock_upstream(scratch)
    home = scratch / "home"
    home.mkdir()
    versions = [load_policy_text(policy(mock.url, name)) for name in ("mock-a", "mock-b")]
    (home / "policy.yaml").write_text(versions[0].text)
    db = Database(f"sqlite:///{home / 'gatehouse.db'}")
    db.upgrade()
    service.add_person(db, "local:bench", "owner@example.com")
    governance.change_role(db, "local:bench", "owner@example.com", "identity-admin", True)
    service.add_person(db, "local:bench", "admin@example.com")
    governance.change_role(db, "person:owner@example.com", "admin@example.com", "policy-admin", True)
    service.create_identity(db, "local:bench", "app", "owner@example.com")
    _, key = service.issue_key(db, "local:bench", "app", pepper=PEPPER.encode(), ttl=timedelta(hours=1),
                               max_ttl=timedelta(hours=1))
    env = {**os.environ, "GATEHOUSE_HOME": str(home), "GATEHOUSE_PEPPER": PEPPER}
    gateway = start_gateway(env, scratch, workers=workers)
    for loaded in versions:
        change_control.activate_served_file(db, "local:bench", loaded, "bench")  # store both versions
    stop = threading.Event()
    outcomes = {"ok": 0, "failed": 0}

    def client() -> None:
        with httpx.Client(headers={"authorization": f"Bearer {key}"}) as http:
            while not stop.is_set():
                status = http.post(f"{gateway.url}/v1/chat/completions", json=BODY).status_code
                outcomes["ok" if status == 200 else "failed"] += 1

    deadline = time.monotonic() + 30
    while len([w for w in policy_workers.status(db)["workers"] if w["state"] != "gone"]) < workers:
        if time.monotonic() > deadline:
            raise SystemExit("the workers never reported in")
        time.sleep(0.1)
    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    timings = []
    try:
        for trial in range(trials):
            target = versions[trial % 2]
            change_control.apply(db, "person:admin@example.com", target.version)
            applied = time.perf_counter()
            while True:
                live = [w for w in policy_workers.status(db)["workers"] if w["state"] != "gone"]
                if len(live) >= workers and all(w["policy_version"] == target.version for w in live):
                    break
                time.sleep(0.002)
            timings.append((time.perf_counter() - applied) * 1000)
            time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        gateway.stop()
        mock.stop()
    print(f"apply → enforced by all {workers} workers, {trials} trials: p50 {percentile(timings, 50):.0f} ms, "
          f"p95 {percentile(timings, 95):.0f} ms, max {max(timings):.0f} ms")
    print(f"requests during the switches: {outcomes['ok']:,} answered, {outcomes['failed']} failed")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50, int(sys.argv[2]) if len(sys.argv) > 2 else 2)
