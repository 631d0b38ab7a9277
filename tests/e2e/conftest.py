"""Real processes for end-to-end tests: a mock upstream, gateways, the openai SDK."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from openai import OpenAI

from gatehouse.identity import service
from gatehouse.policy.loader import load_policy
from gatehouse.store.db import Database
from helpers import ServerProcess, free_port, start_gateway, start_mock_upstream

MOCK_CREDENTIAL = "upstream-secret-for-tests"
ACTOR = "local:e2e"


def policy_text(mock: str, refused_port: int) -> str:
    return textwrap.dedent(f"""\
        version: 1
        deployments:
          embedded-gemma:
            engine: embedded
            model: gemma-3-270m
            settings: {{context_size: 1024}}
          embedded-narrow:
            engine: embedded
            model: gemma-3-270m
            settings: {{context_size: 512, max_waiting: 0}}
          mock-ok:
            engine: vllm
            url: {mock}/ok/v1
            model: mock-served-model
            credential: {{env: MOCK_UPSTREAM_KEY}}
          mock-500: {{engine: openai, url: "{mock}/fail500/v1", model: m}}
          mock-badjson: {{engine: openai, url: "{mock}/badjson/v1", model: m}}
          mock-429: {{engine: openai, url: "{mock}/ratelimit/v1", model: m}}
          mock-400: {{engine: openai, url: "{mock}/reject400/v1", model: m}}
          mock-drop: {{engine: openai, url: "{mock}/drop/v1", model: m}}
          mock-slow:
            engine: openai
            url: {mock}/slow/v1
            model: m
            timeouts: {{first_token: 1}}
          refused: {{engine: openai, url: "http://127.0.0.1:{refused_port}/v1", model: m}}
        aliases:
          chat-small: {{route: [embedded-gemma]}}
          busy-small: {{route: [embedded-narrow]}}
          fallback-chat: {{route: [mock-500, refused, embedded-gemma]}}
          mock-chat: {{route: [mock-ok]}}
          broken: {{route: [mock-500, mock-badjson]}}
          down: {{route: [refused]}}
          slow: {{route: [mock-slow]}}
          limited: {{route: [mock-429]}}
          rejecting: {{route: [mock-400]}}
          dropping: {{route: [mock-drop]}}
          secret-model: {{route: [mock-ok]}}
        grants:
          - name: dev-all
            subjects: [{{environment: dev}}]
            aliases: [chat-small, busy-small, fallback-chat, mock-chat, broken, down, slow, limited, rejecting, dropping]
          - name: research-only
            subjects: [{{team: research}}]
            aliases: [secret-model]
        """)


DEV_ALIASES = sorted(["chat-small", "busy-small", "fallback-chat", "mock-chat", "broken", "down", "slow",
                      "limited", "rejecting", "dropping"])


class Deployment:
    """A gateway home: database, policy and helpers to issue keys into it."""

    def __init__(self, home: Path, policy: str, models_dir: Path, database_url: str | None = None, **env: str) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        (home / "models").symlink_to(models_dir, target_is_directory=True)
        (home / "policy.yaml").write_text(policy)
        self.policy_version = load_policy(home / "policy.yaml").version
        self.env = {**os.environ, "GATEHOUSE_HOME": str(home), "GATEHOUSE_PEPPER": "e2e-pepper",
                    "MOCK_UPSTREAM_KEY": MOCK_CREDENTIAL, **env}
        self.env.pop("GATEHOUSE_DATABASE_URL", None)
        self.env.pop("GATEHOUSE_POLICY", None)
        if database_url:
            self.env["GATEHOUSE_DATABASE_URL"] = database_url
        self.db = Database(database_url or f"sqlite:///{home / 'gatehouse.db'}")
        self.db.upgrade()
        service.add_person(self.db, ACTOR, "owner@example.com", team="platform")
        service.add_person(self.db, ACTOR, "researcher@example.com", team="research")

    def identity(self, name: str, owner: str = "owner@example.com", **kwargs) -> str:
        service.create_identity(self.db, ACTOR, name, owner, **kwargs)
        return name

    def key(self, identity: str, ttl: timedelta = timedelta(days=1), scopes: list[str] | None = None) -> str:
        _, key = service.issue_key(self.db, ACTOR, identity, pepper=b"e2e-pepper", ttl=ttl,
                                   max_ttl=timedelta(days=90), scopes=scopes)
        return key


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def mock_upstream(logs: Path) -> Iterator[ServerProcess]:
    server = start_mock_upstream(logs, "--slow-seconds", "5")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def refused_port() -> int:
    return free_port()  # nothing listens there


@pytest.fixture(scope="session")
def gateway_home(tmp_path_factory, mock_upstream, refused_port, shared_models_dir) -> Deployment:
    home = tmp_path_factory.mktemp("e2e") / "home"
    return Deployment(home, policy_text(mock_upstream.url, refused_port), shared_models_dir,
                      GATEHOUSE_MAX_BODY_BYTES="65536")


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


def wait_until_accepted(gateway: ServerProcess, key: str, timeout: float = 5) -> str:
    """Keys issued while a gateway runs are picked up by its next refresh (every 0.2 s)."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200:
            return key
        time.sleep(0.05)
    raise AssertionError("the gateway never accepted the new key")


@pytest.fixture
def fresh_key(gateway: ServerProcess, gateway_home: Deployment) -> Callable[..., str]:
    def issue(identity: str = "e2e-app", **kwargs) -> str:
        return wait_until_accepted(gateway, gateway_home.key(identity, **kwargs))

    return issue
