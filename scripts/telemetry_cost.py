"""What telemetry costs a request, in process: the Prometheus metrics and the per-minute usage
counts fed from each decision record (one worker, and several workers' shared files), and
tracing — noting the instants on the request path, then building the spans when it ends and
exporting them over OTLP/HTTP to a local sink.

    .venv/bin/python scripts/telemetry_cost.py [requests]

Prints microseconds of CPU per request. For tracing: off, 10% sampled and every request traced;
the batch exporter's thread serialises and sends in the background and its CPU is included,
since it competes with the request path for the same cores.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gatehouse.routing.router import Attempt


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


def record(trace) -> dict:  # type: ignore[no-untyped-def]
    return {"request_id": "req_x", "identity": "app", "key_id": "k1", "endpoint": "chat/completions", "alias": "chat",
            "deployment": "d2", "fallbacks": ["d1=connect"], "policy_version": "sha256:x", "data_class": "internal",
            "guardrails": [{"rule": "pii.email", "action": "redact", "shadow": False}], "status": 200, "error_code": None,
            "stream": False, "prompt_tokens": 20, "completion_tokens": 8, "latency_ms": 1.0, "ttft_ms": 1.0, "_trace": trace}


def one_request(tracing) -> None:  # type: ignore[no-untyped-def]
    from gatehouse.telemetry.tracing import NULL_TRACE, finish_trace

    started = time.perf_counter()
    trace = tracing.begin({}, "chat/completions", started) if tracing is not None else NULL_TRACE
    for mark in ("authenticated", "validated", "authorized", "guarded", "dispatched"):
        trace.mark(mark)
    trace.tried([Attempt("d1", "connect", started, time.perf_counter())])
    trace.mark("answered")
    finish_trace(record(trace))


def measure(label: str, requests: int) -> None:
    from gatehouse.telemetry.tracing import Tracing, enabled_by_environment

    tracing = Tracing("bench:1") if enabled_by_environment() else None
    for _ in range(500):
        one_request(tracing)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        one_request(tracing)
    if tracing is not None:
        tracing.shutdown()  # export everything queued: its CPU counts too
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{label:<34} {cpu / requests * 1e6:8.1f} µs CPU per request   ({requests / wall:,.0f} requests/s)")


def observers(label: str, requests: int) -> None:
    from gatehouse.monitoring.usage import UsageRollup
    from gatehouse.telemetry.gateway_metrics import GatewayMetrics

    metrics, usage = GatewayMetrics(), UsageRollup("bench:1")
    samples = [record(None) | {"identity": f"app-{n % 50}"} for n in range(1000)]
    for sample in samples:
        sample.pop("_trace")
    for name, observe in (("metrics", metrics.observe), ("usage counts", usage.observe)):
        cpu = time.process_time()
        for n in range(requests):
            observe(samples[n % 1000])
        print(f"{name + ' (' + label + ')':<34} {(time.process_time() - cpu) / requests * 1e6:8.1f} µs CPU per request")


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the child run below
        observers("several workers", requests)
        return
    observers("one worker", requests)
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as shared:
        subprocess.run([sys.executable, __file__, str(requests)], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": shared},
                       check=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    variants = [("tracing off", {}),
                ("10% sampled", {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_SAMPLER": "traceidratio",
                                 "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
                ("every request traced (7 spans)", {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                                                    "OTEL_TRACES_SAMPLER": "always_on"})]
    for label, env in variants:
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
            os.environ.pop(name, None)
        os.environ.update(env)
        measure(label, requests)
    server.shutdown()


if __name__ == "__main__":
    main()
