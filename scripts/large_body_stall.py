"""How long a large request body holds up other requests: /healthz latency while a body of
SIZE bytes is read, parsed, checked and scanned, sent with a Content-Length and then chunked.

    .venv/bin/python scripts/large_body_stall.py http://127.0.0.1:8080 "$KEY" chat 3200000

Prints, for each way of sending, how long the inference request took and the slowest and
median /healthz answer while it ran. Before issue 16 a chunked body was scanned on the event
loop (it says no size up front), so /healthz waited for the whole scan.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import orjson


def body_of(alias: str, size: int) -> bytes:
    words = "the quarterly report says revenue grew in every region "
    text = (words * (size // len(words) + 1))[:size]
    return orjson.dumps({"model": alias, "max_tokens": 2, "messages": [{"role": "user", "content": text}]})


def measure(url: str, key: str, body: bytes, chunked: bool) -> tuple[float, list[float], int]:
    done = threading.Event()
    health: list[float] = []

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not done.is_set():
                started = time.perf_counter()
                client.get("/healthz")
                health.append((time.perf_counter() - started) * 1000)
                time.sleep(0.01)

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    prober = threading.Thread(target=probe)
    prober.start()
    time.sleep(0.2)
    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/chat/completions", content=pieces() if chunked else body, timeout=120,
                          headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    took = (time.perf_counter() - started) * 1000
    time.sleep(0.2)
    done.set()
    prober.join()
    return took, health, response.status_code


def main(url: str, key: str, alias: str, size: int) -> None:
    body = body_of(alias, size)
    for chunked in (False, True, False, True):
        took, health, status = measure(url, key, body, chunked)
        print(f"{'chunked' if chunked else 'sized  '} {len(body):>9} bytes: status {status}, request {took:7.1f} ms, "
              f"/healthz max {max(health):7.1f} ms, median {statistics.median(health):5.1f} ms ({len(health)} probes)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
