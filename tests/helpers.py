"""Helpers for tests that run real processes: free ports, servers, CLI calls."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gatehouse.bench.processes import ServerProcess, free_port, start_gateway, start_mock_upstream
from gatehouse.guardrails.normalise import ENCODED_DEPTH

__all__ = ["ROOT", "Receiver", "ServerProcess", "cli", "free_port", "start_gateway", "start_mock_upstream", "unreadable"]

ROOT = Path(__file__).resolve().parent.parent


def unreadable(text: str) -> str:
    """``text`` nested in base64 one level deeper than the input rules decode: the echo mock
    says it (``base64:`` prefixes are undone), the input rules cannot read it, so the model
    "says" it on its own."""
    for _ in range(ENCODED_DEPTH + 1):
        text = "base64:" + base64.b64encode(text.encode()).decode()
    return text


def cli(*args: str, env: dict[str, str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real ``gatehouse`` command line."""
    result = subprocess.run([sys.executable, "-m", "gatehouse.cli.main", *args], env=env, capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"gatehouse {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


class Receiver:
    """A webhook or pager endpoint in a thread that keeps the JSON bodies it was sent."""

    def decode(self, body: bytes, content_type: str) -> list:
        return [json.loads(body)]

    def __init__(self) -> None:
        received: list = []
        self.received = received
        self.status = 202  # what it answers; set to 503 to play a receiver that is down
        decode, receiver = self.decode, self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                received.extend(decode(self.rfile.read(int(self.headers["content-length"])), self.headers["content-type"]))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class OtlpReceiver(Receiver):
    """An OTLP/HTTP trace collector: keeps every span it is sent, as a dict."""

    def decode(self, body: bytes, content_type: str) -> list:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        assert content_type == "application/x-protobuf"
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    spans.append({"name": span.name, "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                                  "parent": span.parent_span_id.hex(), "kind": span.kind, "service": service,
                                  "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                                  "attributes": {a.key: _value(a.value) for a in span.attributes}})
        return spans

    @property
    def endpoint(self) -> str:
        return self.url.removesuffix("/hook")


def _value(value):  # type: ignore[no-untyped-def]
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind)


def own_admin_key(db, issuer: str, email: str, pepper: bytes, ttl=None) -> str:  # type: ignore[no-untyped-def]  # test helper
    """An admin key for ``email`` as they would hold it: issued (an enrolment key, when the
    issuer is someone else) and exchanged by them for their own."""
    from datetime import timedelta

    from gatehouse.identity.admin_keys import authenticate_admin, issue_admin_key, redeem_admin_key

    ttl = ttl or timedelta(days=1)
    _, text = issue_admin_key(db, issuer, email, pepper=pepper, ttl=ttl, max_ttl=timedelta(days=90))
    principal = authenticate_admin(db, pepper, f"Bearer {text}")
    if not principal.enrolment:
        return text
    return redeem_admin_key(db, principal, pepper=pepper, ttl=ttl, max_ttl=timedelta(days=90))[1]
