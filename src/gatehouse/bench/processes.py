"""Real servers in subprocesses, for ``gatehouse bench overhead`` and the test suite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A real server in a subprocess, waited for on a health URL, stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, health_path: str, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}{health_path}", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not come up:\n{self.log()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 40) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode


def start_gateway(env: dict[str, str], log_dir: Path, workers: int = 1, name: str = "gateway") -> ServerProcess:
    port = free_port()
    args = [sys.executable, "-m", "gatehouse.cli.main", "serve", "--port", str(port), "--workers", str(workers)]
    return ServerProcess(args, env, port, "/healthz", log_dir / f"{name}-{port}.log")


def start_mock_upstream(log_dir: Path, *extra: str) -> ServerProcess:
    port = free_port()
    args = [sys.executable, "-m", "gatehouse.cli.main", "bench", "mock-upstream", "--port", str(port), *extra]
    return ServerProcess(args, dict(os.environ), port, "/v1/models", log_dir / f"mock-{port}.log")
