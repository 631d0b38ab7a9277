"""Real processes for end-to-end tests: a mock upstream, gateways, the openai SDK."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from openai import OpenAI

from gateway_support import LEAK_REPORT_TOKEN, Deployment, policy_text, wait_until_accepted
from helpers import ServerProcess, free_port, start_gateway, start_mock_upstream


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def mock_upstream(logs: Path) -> Iterator[ServerProcess]:
    server = start_mock_upstream(logs, "--slow-seconds", "5")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mock(logs: Path) -> Iterator[ServerProcess]:
    """A mock upstream of the module's own, for tests that change its settings or read what it saw."""
    server = start_mock_upstream(logs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def refused_port() -> int:
    return free_port()  # nothing listens there


@pytest.fixture(scope="session")
def github_scanning_key(tmp_path_factory) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    """A stand-in for GitHub's secret-scanning signing key, and its public half in GitHub's format."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path_factory.mktemp("github") / "secret_scanning_keys.json"
    path.write_text(json.dumps({"public_keys": [{"key_identifier": "test-key-1", "key": pem.decode(), "is_current": True}]}))
    return private, path


@pytest.fixture(scope="session")
def gateway_home(tmp_path_factory, mock_upstream, refused_port, shared_models_dir, github_scanning_key) -> Deployment:
    home = tmp_path_factory.mktemp("e2e") / "home"
    return Deployment(home, policy_text(mock_upstream.url, refused_port), shared_models_dir,
                      GATEHOUSE_MAX_BODY_BYTES="65536", GATEHOUSE_LEAK_REPORT_TOKEN=LEAK_REPORT_TOKEN,
                      GATEHOUSE_NOTIFY_WEBHOOK=f"{mock_upstream.url}/_mock/webhook",
                      GATEHOUSE_GITHUB_SCANNING_KEYS=str(github_scanning_key[1]))


@pytest.fixture(scope="session")
def gateway(gateway_home: Deployment, logs: Path) -> Iterator[ServerProcess]:
    server = start_gateway(gateway_home.env, logs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dev_key(gateway_home: Deployment) -> str:
    gateway_home.identity("e2e-app", purpose="end-to-end tests")
    return gateway_home.key("e2e-app")


@pytest.fixture(scope="session")
def client(gateway: ServerProcess, dev_key: str) -> OpenAI:
    wait_until_accepted(gateway, dev_key)
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=dev_key, max_retries=0, timeout=120)


@pytest.fixture
def make_client(gateway: ServerProcess) -> Callable[[str], OpenAI]:
    return lambda key: OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture
def fresh_key(gateway: ServerProcess, gateway_home: Deployment) -> Callable[..., str]:
    def issue(identity: str = "e2e-app", **kwargs) -> str:
        return wait_until_accepted(gateway, gateway_home.key(identity, **kwargs))

    return issue
