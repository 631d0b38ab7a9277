"""Helpers for tests that run real processes: free ports, servers, CLI calls."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gatehouse.bench.processes import ServerProcess, free_port, start_gateway, start_mock_upstream

__all__ = ["ROOT", "Receiver", "ServerProcess", "cli", "free_port", "start_gateway", "start_mock_upstream"]

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real ``gatehouse`` command line."""
    result = subprocess.run([sys.executable, "-m", "gatehouse.cli.main", *args], env=env, capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"gatehouse {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


class Receiver:
    """A webhook or pager endpoint in a thread that keeps the JSON bodies it was sent."""

    def __init__(self) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
