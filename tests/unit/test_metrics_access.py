"""Who may scrape ``/metrics`` on the API port: whoever holds GATEHOUSE_METRICS_TOKEN, and anyone
only on a dev installation without one. Through the app's own routes (``build_app``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from unittest.mock import MagicMock

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gatehouse.api.routes import build_app
from gatehouse.core.config import Settings

TOKEN = "scrape-token-for-tests-0123456789"


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield


def client(settings: Settings | None, *, passed: Settings | None = None) -> TestClient:
    """The gateway's routes (their handlers stand-ins), with ``settings`` where the factory puts them."""
    app = build_app(MagicMock(), MagicMock(), MagicMock(), _lifespan, **({"settings": passed} if passed else {}))
    if settings is not None:
        app.state.settings = settings
    return TestClient(app)  # type: ignore[arg-type]  # HotPath is an ASGI app


@pytest.fixture
def prod(tmp_path: Path) -> Settings:
    return Settings(tmp_path, "sqlite://", tmp_path / "policy.yaml", timedelta(days=1), 1 << 20)


def is_metrics(answer) -> bool:  # type: ignore[no-untyped-def]  # an httpx response
    return answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain") and (
        "# HELP" in answer.text)


def test_without_a_token_outside_dev_the_scrape_is_refused_with_a_clear_error(prod: Settings):
    for settings in (prod, replace(prod, environment="staging"), None):
        answer = client(settings).get("/metrics")
        assert answer.status_code == 403
        error = answer.json()["error"]
        assert error["code"] == "metrics_token_not_set" and error["type"] == "permission_denied_error"
        assert "GATEHOUSE_METRICS_TOKEN" in error["message"] and "credentials_file" in error["message"]
        assert "# HELP" not in answer.text and answer.headers["x-gatehouse-request-id"].startswith("req_")


def test_without_a_token_a_dev_installation_is_open(prod: Settings):
    assert is_metrics(client(replace(prod, environment="dev")).get("/metrics"))


@pytest.mark.parametrize("environment", ["prod", "dev"])
def test_with_a_token_only_its_holder_reads(prod: Settings, environment: str):
    scraper = client(replace(prod, environment=environment, metrics_token=TOKEN))
    for headers in ({}, {"authorization": "Bearer"}, {"authorization": f"Basic {TOKEN}"}, {"authorization": TOKEN}):
        missing = scraper.get("/metrics", headers=headers)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer ")
        assert missing.json()["error"]["code"] == "metrics_unauthenticated" and "# HELP" not in missing.text
    for wrong in ("nope", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        refused = scraper.get("/metrics", headers={"authorization": f"Bearer {wrong}"})
        assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert refused.json()["error"]["type"] == "authentication_error" and TOKEN not in refused.text
    odd = scraper.get("/metrics", headers=[(b"authorization", b"Bearer \xe9\xff")])  # not ASCII: refused, not a crash
    assert odd.status_code == 401
    assert is_metrics(scraper.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}))
    assert is_metrics(scraper.get("/metrics", headers={"authorization": f"bearer  {TOKEN} "}))


def test_settings_given_to_the_routes_are_the_ones_that_count(prod: Settings):
    scraper = client(replace(prod, environment="dev"), passed=replace(prod, metrics_token=TOKEN))
    assert scraper.get("/metrics").status_code == 401
    assert is_metrics(scraper.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}))
