"""Admin API latency per call against a running gateway: median and p95 of N calls each.

    .venv/bin/python scripts/admin_latency.py http://127.0.0.1:8080 "$ADMIN_KEY" 100

The key must be an identity-admin's own key (not an enrolment key); it adds people and issues
keys for the identity ``demo-app`` (what `make demo` creates).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import httpx


def main(url: str, key: str, n: int) -> None:
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}) as client:
        def measure(name: str, call: Callable[[int], httpx.Response]) -> None:
            times = []
            for i in range(n):
                started = time.perf_counter()
                response = call(i)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code < 300, response.text
            times.sort()
            print(f"{name:34s} median {statistics.median(times):6.2f} ms  p95 {times[int(n * 0.95) - 1]:6.2f} ms")

        measure("GET /admin/whoami", lambda i: client.get("/admin/whoami"))
        measure("GET /admin/identities", lambda i: client.get("/admin/identities"))
        measure("POST /admin/people", lambda i: client.post("/admin/people", json={"email": f"p{i}-{time.time_ns()}@example.com"}))
        measure("POST /admin/identities/{n}/keys", lambda i: client.post("/admin/identities/demo-app/keys", json={"ttl": "1h"}))
        measure("GET /admin/findings", lambda i: client.get("/admin/findings"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
