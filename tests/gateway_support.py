"""Helpers for end-to-end tests: a gateway home with policy, people and keys."""

from __future__ import annotations

import json
import os
import sqlite3
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import httpx

from gatehouse.identity import governance, service
from gatehouse.identity.bootstrap import bootstrap
from gatehouse.policy.loader import load_policy
from gatehouse.store.db import Database

from helpers import ServerProcess

MOCK_CREDENTIAL = "upstream-secret-for-tests"
LEAK_REPORT_TOKEN = "leak-report-token-for-tests"
ROOT_EMAIL = "root@example.com"
ACTOR = f"person:{ROOT_EMAIL}"  # the installation's first identity-admin, bootstrapped in every home
SECOND_EMAIL = "second-admin@example.com"
SECOND = f"person:{SECOND_EMAIL}"


def policy_text(mock: str, refused_port: int) -> str:
    return textwrap.dedent(f"""\
        version: 1
        deployments:
          embedded-gemma:
            engine: embedded
            model: gemma-3-270m
            settings: {{context_size: 1024, slots: 4}}
          embedded-narrow:
            engine: embedded
            model: gemma-3-270m
            settings: {{context_size: 512, slots: 1, max_waiting: 0}}
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
          mock-401: {{engine: openai, url: "{mock}/unauthorized/v1", model: m}}
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
          bad-credential: {{route: [mock-401, mock-ok]}}
          only-bad-credential: {{route: [mock-401]}}
          secret-model: {{route: [mock-ok]}}
        grants:
          - name: dev-all
            subjects: [{{environment: dev}}]
            aliases: [chat-small, busy-small, fallback-chat, mock-chat, broken, down, slow, limited, rejecting, dropping,
                      bad-credential, only-bad-credential]
          - name: research-only
            subjects: [{{team: research}}]
            aliases: [secret-model]
        """)


def mock_route_policy(mock: str, *behaviours: str) -> str:
    """One alias, ``chat``, routed through the mock upstream's behaviours in order, for dev."""
    deployments = "\n".join(f'  {b}: {{engine: openai, url: "{mock}/{b}/v1", model: m}}' for b in behaviours)
    return (f"version: 1\ndeployments:\n{deployments}\naliases:\n  chat: {{route: [{', '.join(behaviours)}]}}\n"
            "grants:\n  - {name: all-dev, subjects: [{environment: dev}], aliases: [chat]}\n")


DEV_ALIASES = sorted(["chat-small", "busy-small", "fallback-chat", "mock-chat", "broken", "down", "slow",
                      "limited", "rejecting", "dropping", "bad-credential", "only-bad-credential"])


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
        self.admin_key = bootstrap(self.db, "local:e2e", ROOT_EMAIL, pepper=b"e2e-pepper", ttl=timedelta(days=1)).admin_key
        self.env["GATEHOUSE_ADMIN_KEY"] = self.admin_key  # the CLI signs in as root, on this home's store
        service.add_person(self.db, ACTOR, SECOND_EMAIL, team="platform")
        governance.change_role(self.db, ACTOR, SECOND_EMAIL, "identity-admin", True)  # approves what root asks for
        service.add_person(self.db, ACTOR, "owner@example.com", team="platform")
        service.add_person(self.db, ACTOR, "researcher@example.com", team="research")

    def identity(self, name: str, owner: str = "owner@example.com", actor: str = ACTOR, **kwargs) -> str:
        kwargs.setdefault("exempt_environments", frozenset({kwargs.get("environment", "dev")}))  # no approval step
        created = service.create_identity(self.db, actor, name, owner, **kwargs)
        if created.status == "pending":  # a team, labels or a raised clearance: another identity-admin approves
            approver = SECOND if actor == ACTOR else ACTOR
            governance.decide_identity(self.db, approver, name, approve=True)
        return name

    def key_info(self, key_id: str) -> dict:
        return next(k for k in service.list_keys(self.db) if k["key_id"] == key_id)

    def key(self, identity: str, ttl: timedelta = timedelta(days=1), scopes: list[str] | None = None) -> str:
        _, key = service.issue_key(self.db, ACTOR, identity, pepper=b"e2e-pepper", ttl=ttl,
                                   max_ttl=timedelta(days=90), scopes=scopes)
        return key


def wait_until_accepted(gateway: ServerProcess, key: str, timeout: float = 5) -> str:
    """Keys issued while a gateway runs are picked up by its next refresh (every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200:
            return key
        time.sleep(0.05)
    raise AssertionError("the gateway never accepted the new key")


def decision_record(home: Deployment, request_id: str) -> dict:
    """A request's decision record in the home's SQLite store, once the spool has drained it
    (AssertionError after 10 s): its status, error code, data class, verdicts and deployment."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        connection = sqlite3.connect(home.home / "gatehouse.db")
        row = connection.execute("SELECT status, error_code, data_class, guardrails, deployment FROM decision_records "
                                 "WHERE request_id = ?", (request_id,)).fetchone()
        connection.close()
        if row:
            return {"status": row[0], "error_code": row[1], "data_class": row[2],
                    "guardrails": json.loads(row[3]) if row[3] else None, "deployment": row[4]}
        time.sleep(0.1)
    raise AssertionError(f"no decision record for {request_id}")


def mock_requests(mock: ServerProcess) -> list[dict]:
    """What the mock upstream received: the last 100 requests' paths, headers and bodies."""
    return httpx.get(f"{mock.url}/_mock/requests").json()
