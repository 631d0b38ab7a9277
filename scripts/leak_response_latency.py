"""Time from a leak report to the key being refused by every worker.

A real `gatehouse serve --workers 2` in front of the mock upstream; per trial, a fresh key is
issued and seen working, then reported through `POST /admin/leaks`, and probed over new
connections (so the kernel spreads them across both workers) until 40 probes in a row are
refused. The figure is the time from sending the report to the last probe that still got
through (an upper bound on when the slower worker stopped accepting it).

    .venv/bin/python scripts/leak_response_latency.py [TRIALS]
"""

import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

from gatehouse.bench.processes import start_gateway, start_mock_upstream
from gatehouse.bench.stats import percentile
from gatehouse.identity import service
from gatehouse.store.db import Database

TOKEN = "leak-latency-token"
PEPPER = "leak-latency-pepper"
BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def main(trials: int) -> None:
    scratch = Path(tempfile.mkdtemp())
    mock = start_mock_upstream(scratch)
    home = scratch / "home"
    home.mkdir()
    (home / "policy.yaml").write_text(
        f"version: 1\ndeployments:\n  mock: {{engine: openai, url: \"{mock.url}/v1\", model: m}}\n"
        "aliases:\n  chat: {route: [mock]}\ngrants:\n  - {name: all, subjects: [{environment: dev}], aliases: [chat]}\n")
    db = Database(f"sqlite:///{home / 'gatehouse.db'}")
    db.upgrade()
    service.add_person(db, "local:bench", "owner@example.com")
    service.create_identity(db, "local:bench", "leaky", "owner@example.com")
    env = {**os.environ, "GATEHOUSE_HOME": str(home), "GATEHOUSE_PEPPER": PEPPER, "GATEHOUSE_LEAK_REPORT_TOKEN": TOKEN}
    gateway = start_gateway(env, scratch, workers=2)
    url = f"{gateway.url}/v1/chat/completions"
    timings = []
    try:
        for _ in range(trials):
            _, key = service.issue_key(db, "local:bench", "leaky", pepper=PEPPER.encode(), ttl=timedelta(hours=1),
                                       max_ttl=timedelta(hours=1))
            headers = {"authorization": f"Bearer {key}", "connection": "close"}
            while sum(httpx.post(url, json=BODY, headers=headers).status_code == 200 for _ in range(20)) < 20:
                time.sleep(0.05)  # until both workers know the new key
            sent = time.monotonic()
            report = httpx.post(f"{gateway.url}/admin/leaks", json=[{"token": key, "type": "t", "url": "bench"}],
                                headers={"authorization": f"Bearer {TOKEN}"})
            assert report.json()[0]["label"] == "true_positive", report.text
            last_success, refused_in_a_row = sent, 0
            while refused_in_a_row < 40:
                status = httpx.post(url, json=BODY, headers=headers).status_code
                if status == 200:
                    last_success, refused_in_a_row = time.monotonic(), 0
                else:
                    refused_in_a_row += 1
            timings.append((last_success - sent) * 1000)
    finally:
        gateway.stop()
        mock.stop()
    print(f"leak report → refused by every worker, {trials} trials (ms): p50 {percentile(timings, 50):.0f}, "
          f"p99 {percentile(timings, 99):.0f}, max {max(timings):.0f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
