"""Median latency the gateway adds at concurrency 1.

The mock upstream alone, then the same mock behind a real `gatehouse serve` (key auth, policy,
routing, decision records on), 400 sequential non-streamed chat completions each after 50 of
warm-up. A stopgap until `gatehouse bench overhead` (issue 6).

    .venv/bin/python scripts/gateway_latency.py
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from gateway_support import Deployment, mock_route_policy  # noqa: E402
from helpers import start_gateway, start_mock_upstream  # noqa: E402

BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def median_ms(url: str, headers: dict[str, str], warmup: int = 50, samples: int = 400) -> float:
    timings = []
    with httpx.Client() as client:
        for _ in range(warmup):
            client.post(url, json=BODY, headers=headers)
        for _ in range(samples):
            started = time.perf_counter()
            response = client.post(url, json=BODY, headers=headers)
            timings.append(time.perf_counter() - started)
            response.raise_for_status()
    return statistics.median(timings) * 1000


def main() -> None:
    logs = Path(tempfile.mkdtemp())
    mock = start_mock_upstream(logs)
    policy = mock_route_policy(mock.url, "ok")
    home = Deployment(Path(tempfile.mkdtemp()) / "home", policy, Path(tempfile.mkdtemp()))
    home.identity("latency")
    key = home.key("latency")
    gateway = start_gateway(home.env, logs)
    try:
        time.sleep(0.5)  # the new key reaches the gateway's table
        direct = median_ms(f"{mock.url}/ok/v1/chat/completions", {})
        via = median_ms(f"{gateway.url}/v1/chat/completions", {"authorization": f"Bearer {key}"})
    finally:
        gateway.stop()
        mock.stop()
    print(f"median latency at concurrency 1: mock alone {direct:.2f} ms, "
          f"through gatehouse {via:.2f} ms, added {via - direct:.2f} ms")


if __name__ == "__main__":
    main()
