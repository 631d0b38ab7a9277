"""``/metrics`` on a real gateway's API port: refused outside dev without GATEHOUSE_METRICS_TOKEN,
and with one, read only by whoever sends it; never a sample without it."""

from __future__ import annotations

import httpx
import pytest

from gateway_support import Deployment, mock_route_policy, wait_until_accepted
from helpers import start_gateway

TOKEN = "scrape-token-for-e2e-tests"


def test_a_gateway_without_a_token_refuses_every_scrape(gateway, client):
    client.models.list()  # an identity has called: there is something to hide
    for headers in ({}, {"authorization": "Bearer anything"}):
        refused = httpx.get(f"{gateway.url}/metrics", headers=headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "metrics_token_not_set"
        assert "GATEHOUSE_METRICS_TOKEN" in refused.json()["error"]["message"] and "e2e-app" not in refused.text


@pytest.fixture(scope="module")
def scraped(tmp_path_factory, shared_models_dir, mock, logs):
    home = Deployment(tmp_path_factory.mktemp("scrape") / "home", mock_route_policy(mock.url, "ok"), shared_models_dir,
                      GATEHOUSE_METRICS_TOKEN=TOKEN)
    key = home.key(home.identity("scraped-app"))
    gateway = start_gateway(home.env, logs, workers=2, name="scrape-gateway")
    wait_until_accepted(gateway, key)
    httpx.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
               json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    yield gateway
    gateway.stop()


def test_only_the_token_reads_the_samples(scraped):
    for headers in ({}, {"authorization": f"Bearer {TOKEN}x"}, {"authorization": f"Basic {TOKEN}"}):
        refused = httpx.get(f"{scraped.url}/metrics", headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["error"]["code"] == "metrics_unauthenticated" and "scraped-app" not in refused.text
    for _ in range(4):  # whichever worker answers
        answer = httpx.get(f"{scraped.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200 and 'gatehouse_identity="scraped-app"' in answer.text
