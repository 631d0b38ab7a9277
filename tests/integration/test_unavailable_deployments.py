"""A worker following the store enforces a version in which one deployment's credential cannot
be used: that deployment is built unavailable (its problem there for operators to read), the
others are served, and putting the credential right takes effect at the next version's load."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gatehouse.app.factory import active_policy
from gatehouse.core.config import Settings
from gatehouse.engines.build import UnavailableEngine, build_engines, engine_problems
from gatehouse.engines.openai_upstream import OpenAIUpstream
from gatehouse.identity import bootstrap
from gatehouse.policy import change_control
from gatehouse.policy.loader import load_policy_text
from gatehouse.runtime.enforced import Enforced, PolicyFollower

ROOT = "local:root"


def policy(credential: str, extra: str = "") -> str:
    return ("version: 1\ndeployments:\n"
            f"  first: {{engine: vllm, url: 'http://127.0.0.1:9/v1', model: m, credential: {{file: '{credential}'}}}}\n"
            "  second: {engine: vllm, url: 'http://127.0.0.1:9/v1', model: m}\n"
            f"aliases:\n  chat: {{route: [first, second]}}\n{extra}change_control: {{approvers: 0}}\ngrants: []\n")


@pytest.fixture
def store(db, tmp_path: Path):
    bootstrap.bootstrap(db, "local:init", "root@example.com", pepper=b"pepper", ttl=timedelta(hours=1))
    (tmp_path / "credentials").mkdir()
    return db, Settings(tmp_path, db.url, tmp_path / "policy.yaml", timedelta(days=1), 1 << 20)


async def test_a_version_with_an_unusable_credential_is_enforced_with_that_deployment_unavailable(store):
    db, settings = store
    secret = settings.home / "credentials" / "first"
    secret.write_text("sk-good")
    change_control.activate_served_file(db, ROOT, load_policy_text(policy(str(secret))), "p.yaml")
    compiled, revision, _ = active_policy(db, settings.home)
    engines, _ = build_engines(compiled.deployments, settings)
    follower = PolicyFollower(db, settings, Enforced(compiled, engines), revision, on_swap=[])
    assert engine_problems(follower.current.engines) == {}

    broken = settings.home / "credentials" / "broken"
    broken.write_bytes(b"sk-one\nsk-two")
    change_control.activate_served_file(db, ROOT, load_policy_text(policy(str(broken))), "p.yaml")
    assert await follower.poll()  # enforced, not refused: one deployment cannot take a version down
    assert follower.problem is None
    problems = engine_problems(follower.current.engines)
    assert list(problems) == ["first"] and str(broken) in problems["first"] and "a line break" in problems["first"]
    assert "sk-one" not in problems["first"] and "sk-two" not in problems["first"]
    assert isinstance(follower.current.engines["second"], OpenAIUpstream)

    broken.write_text("sk-fixed\n")  # put right; the next version (a grant-only change, say) reads it again
    change_control.activate_served_file(db, ROOT, load_policy_text(policy(str(broken), "  other: {route: [second]}\n")),
                                        "p.yaml")
    assert await follower.poll()
    assert engine_problems(follower.current.engines) == {}
    assert not isinstance(follower.current.engines["first"], UnavailableEngine)
    await follower.close()
    for engine in follower.engines():
        await engine.close()
