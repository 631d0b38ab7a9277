"""Requests/s and latency of `gatehouse serve --workers 2` in front of the mock upstream, with
wrk as the load generator (Debian: `apt-get install wrk`), at concurrency 1 and 64; the mock
alone for comparison. `gatehouse bench overhead` is the main tool; this one shows what the same
build does when the load generator is a C program that takes less CPU from the gateway.

    .venv/bin/python scripts/gateway_throughput.py
"""

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from gateway_support import Deployment, mock_route_policy  # noqa: E402
from helpers import start_gateway, start_mock_upstream  # noqa: E402

BODY = '{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}'


def wrk(url: str, key: str, connections: int, script_dir: Path) -> str:
    script = script_dir / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = \'{BODY}\'\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {key}"\n')
    output = subprocess.run(["wrk", "-t1", f"-c{connections}", "-d8s", "--latency", "-s", str(script), url],
                            capture_output=True, text=True, check=True).stdout
    keep = ("Requests/sec", "50%", "99%", "Non-2xx")
    return "\n".join(line.strip() for line in output.splitlines() if line.strip().startswith(keep))


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    scratch = Path(tempfile.mkdtemp())
    mock = start_mock_upstream(scratch)
    home = Deployment(scratch / "home", mock_route_policy(mock.url, "ok"), Path(tempfile.mkdtemp()))
    home.identity("load")
    key = home.key("load")
    gateway = start_gateway(home.env, scratch, workers=2)
    try:
        time.sleep(1)  # the new key reaches both workers
        for connections in (1, 64):
            print(f"--- gatehouse (2 workers), concurrency {connections}")
            print(wrk(f"{gateway.url}/v1/chat/completions", key, connections, scratch))
            print(f"--- mock upstream alone, concurrency {connections}")
            print(wrk(f"{mock.url}/ok/v1/chat/completions", key, connections, scratch))
    finally:
        gateway.stop()
        mock.stop()


if __name__ == "__main__":
    main()
