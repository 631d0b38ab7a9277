"""Helpers for tests that run real processes: free ports, servers, CLI calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gatehouse.bench.processes import ServerProcess, free_port, start_gateway, start_mock_upstream

__all__ = ["ROOT", "ServerProcess", "cli", "free_port", "start_gateway", "start_mock_upstream"]

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real ``gatehouse`` command line."""
    result = subprocess.run([sys.executable, "-m", "gatehouse.cli.main", *args], env=env, capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"gatehouse {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
