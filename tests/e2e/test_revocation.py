"""A revoked key stops working on every worker process within one second."""

import time

import httpx
import pytest

from helpers import cli, start_gateway


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_revocation_reaches_every_worker_within_a_second(store, request, tmp_path, mock_upstream,
                                                         shared_models_dir, logs):
    from gateway_support import Deployment, mock_route_policy, wait_until_accepted

    policy = mock_route_policy(mock_upstream.url, "ok")
    database_url = request.getfixturevalue("postgres_server").create_database() if store == "postgresql" else None
    home = Deployment(tmp_path / "home", policy, shared_models_dir, database_url=database_url)
    home.identity("two-worker-app")
    key = home.key("two-worker-app")
    gateway = start_gateway(home.env, logs, workers=2, name="revocation")
    try:
        wait_until_accepted(gateway, key)

        def worker_pids(count):
            pids = set()
            for _ in range(count):
                with httpx.Client() as fresh:  # a new connection each time, so either worker may answer
                    pids.add(fresh.get(f"{gateway.url}/healthz").json()["worker_pid"])
            return pids

        deadline = time.monotonic() + 30
        while len(worker_pids(20)) < 2:
            assert time.monotonic() < deadline, "only one worker ever answered"
        headers = {"authorization": f"Bearer {key}"}
        for _ in range(10):
            with httpx.Client() as fresh:
                assert fresh.get(f"{gateway.url}/v1/models", headers=headers).status_code == 200

        cli("key", "revoke", key[4:16], "--reason", "test", env=home.env)
        revoked_at = time.monotonic()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - revoked_at)))

        answered_by, statuses = set(), []
        for _ in range(40):
            with httpx.Client() as fresh:
                statuses.append(fresh.get(f"{gateway.url}/v1/models", headers=headers).status_code)
                answered_by.add(fresh.get(f"{gateway.url}/healthz").json()["worker_pid"])
        assert statuses == [401] * 40
        assert len(answered_by) == 2
    finally:
        gateway.stop()
