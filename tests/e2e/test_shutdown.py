"""SIGTERM: requests running in the embedded engine finish; requests queued behind them get 503."""

import signal
import threading
import time

import httpx

from gateway_support import Deployment, wait_until_accepted
from helpers import start_gateway

POLICY = """
version: 1
deployments:
  embedded:
    engine: embedded
    model: gemma-3-270m
    settings: {slots: 1, context_size: 512, max_waiting: 8}
aliases:
  chat: {route: [embedded]}
grants:
  - {name: dev, subjects: [{environment: dev}], aliases: [chat]}
"""


def test_sigterm_finishes_running_work_and_answers_the_queue_503(tmp_path, shared_models_dir, logs):
    home = Deployment(tmp_path / "home", POLICY, shared_models_dir)
    home.identity("draining-app")
    key = home.key("draining-app")
    gateway = start_gateway(home.env, logs, name="shutdown")
    headers = {"authorization": f"Bearer {key}"}
    url = f"{gateway.url}/v1/completions"
    results: dict[str, object] = {}
    try:
        wait_until_accepted(gateway, key)
        first_token = threading.Event()

        def running():
            body = {"model": "chat", "prompt": "1, 2, 3,", "max_tokens": 120, "temperature": 0, "stream": True}
            chunks = []
            with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        chunks.append(line)
                        first_token.set()
            results["running"] = chunks

        def queued(name):
            body = {"model": "chat", "prompt": "4, 5, 6,", "max_tokens": 5}
            response = httpx.post(url, json=body, headers=headers, timeout=60)
            results[name] = (response.status_code, response.json())

        threads = [threading.Thread(target=running)]
        threads[0].start()
        assert first_token.wait(30)
        threads += [threading.Thread(target=queued, args=(f"queued{i}",)) for i in range(2)]
        for thread in threads[1:]:
            thread.start()
        time.sleep(0.5)  # both are waiting for the only slot
        gateway.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
    finally:
        gateway.stop()
    finish = results["running"][-1]
    assert '"finish_reason":"length"' in finish  # the running request was not cut off
    for name in ("queued0", "queued1"):
        status, body = results[name]
        assert status == 503 and body["error"]["code"] == "upstream_unavailable"
        assert "shutting_down" in body["error"]["message"]
    assert "Application shutdown complete" in gateway.log()
