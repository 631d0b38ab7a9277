"""A credential's value is checked where a worker reads it: one token of visible ASCII, or the
deployment is built unavailable (every call a ``credential`` failure the router hands on), with
a message that names the deployment and the reference and never any of the value."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from gatehouse.core.config import Settings
from gatehouse.engines.base import EngineFailure, EngineReply
from gatehouse.engines.build import UnavailableEngine, build_engines, engine_problems
from gatehouse.engines.credentials import CredentialProblem, resolve_credential
from gatehouse.engines.openai_upstream import OpenAIUpstream
from gatehouse.engines.spec import CredentialRef, Deployment
from gatehouse.routing.router import dispatch

LEFT, RIGHT = "sk-LEFTHALF", "RIGHTHALF99"  # no message may hold either half of a refused value
BAD_VALUES = {
    "line break": f"{LEFT}\n{RIGHT}".encode(),
    "carriage return": f"{LEFT}\r{RIGHT}".encode(),
    "NUL": f"{LEFT}\x00{RIGHT}".encode(),
    "DEL": f"{LEFT}\x7f{RIGHT}".encode(),
    "escape": f"{LEFT}\x1b{RIGHT}".encode(),
    "space": f"{LEFT} {RIGHT}".encode(),
    "tab": f"{LEFT}\t{RIGHT}".encode(),
    "byte-order mark": f"\ufeff{LEFT}{RIGHT}".encode(),
    "non-ASCII letter": f"{LEFT}é{RIGHT}".encode(),
    "not UTF-8": LEFT.encode() + b"\xff\xfe" + RIGHT.encode(),
}
WHAT = {"line break": "a line break", "carriage return": "a line break", "NUL": "a NUL byte", "DEL": "a control character",
        "escape": "a control character", "space": "a space or tab", "tab": "a space or tab",
        "byte-order mark": "a non-ASCII character", "non-ASCII letter": "a non-ASCII character",
        "not UTF-8": "a non-ASCII character"}


def clean(message: str) -> None:
    assert LEFT not in message and RIGHT not in message and "LEFTHALF" not in message and "RIGHTHALF" not in message


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home" / "credentials").mkdir(parents=True)
    return tmp_path / "home"


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_a_file_whose_value_a_header_cannot_carry_is_refused_by_name_not_by_value(home: Path, case: str):
    path = home / "credentials" / "vllm"
    path.write_bytes(b"  " + BAD_VALUES[case] + b"\n")
    with pytest.raises(CredentialProblem) as refused:
        resolve_credential("gpu-pool", CredentialRef(file=str(path)), home)
    message = str(refused.value)
    assert message.startswith("deployment 'gpu-pool': the credential in file ") and str(path) in message
    assert WHAT[case] in message and "visible ASCII" in message
    clean(message)


@pytest.mark.parametrize("case", sorted(set(BAD_VALUES) - {"NUL", "not UTF-8"}))  # no environment holds those
def test_an_environment_variable_whose_value_a_header_cannot_carry_is_refused(monkeypatch, case: str):
    monkeypatch.setenv("UPSTREAM_KEY_FOR_TEST", BAD_VALUES[case].decode())
    with pytest.raises(CredentialProblem) as refused:
        resolve_credential("gpu-pool", CredentialRef(env="UPSTREAM_KEY_FOR_TEST"))
    message = str(refused.value)
    assert "deployment 'gpu-pool': the credential in environment variable UPSTREAM_KEY_FOR_TEST" in message
    assert WHAT[case] in message
    clean(message)


def test_whitespace_around_the_value_is_stripped_as_before(home: Path, monkeypatch):
    path = home / "credentials" / "vllm"
    path.write_bytes(b" \t sk-good_token.with~chars+/=\r\n\n")
    assert resolve_credential("d", CredentialRef(file=str(path)), home) == "sk-good_token.with~chars+/="
    monkeypatch.setenv("UPSTREAM_KEY_FOR_TEST", "  tok-123\n")
    assert resolve_credential("d", CredentialRef(env="UPSTREAM_KEY_FOR_TEST")) == "tok-123"


def test_files_that_are_not_one_credential_are_refused_clearly(home: Path):
    big = home / "credentials" / "big"
    big.write_bytes(b"a" * (64 * 1024 + 1))
    blank = home / "credentials" / "blank"
    blank.write_text(" \n\n")
    for path, expected in ((big, "larger than 64 KiB"), (home / "credentials", "not a regular file"),
                           (home / "credentials" / "missing", "No such file"), (blank, "is empty")):
        with pytest.raises(CredentialProblem, match=expected):
            resolve_credential("d", CredentialRef(file=str(path)), home)


def test_the_upstream_engine_refuses_a_key_a_header_cannot_carry():
    deployment = Deployment(engine="vllm", url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(CredentialProblem, match="deployment 'd': its credential contains a line break") as refused:
        OpenAIUpstream("d", deployment, f"{LEFT}\n{RIGHT}")
    clean(str(refused.value))
    assert OpenAIUpstream("d", deployment, "fine") is not None


class Answering:
    name = "second"

    def supports(self, endpoint: str) -> bool:
        return True

    async def call(self, endpoint, body, stream, caller="", request_id=""):  # type: ignore[no-untyped-def]  # a stub
        return EngineReply(body={"ok": True})


def test_a_bad_credential_makes_one_deployment_unavailable_not_the_version(home: Path, caplog):
    bad = home / "credentials" / "bad"
    bad.write_bytes(BAD_VALUES["NUL"])
    deployments = {
        "first": Deployment(engine="vllm", url="http://127.0.0.1:9/v1", model="m", credential=CredentialRef(file=str(bad))),
        "unset": Deployment(engine="vllm", url="http://127.0.0.1:9/v1", model="m",
                            credential=CredentialRef(env="NOT_SET_ANYWHERE_FOR_TESTS")),
        "second": Deployment(engine="vllm", url="http://127.0.0.1:9/v1", model="m"),
    }
    settings = Settings(home, f"sqlite:///{home / 'gatehouse.db'}", home / "policy.yaml", timedelta(days=1), 1 << 20)
    with caplog.at_level(logging.ERROR, logger="gatehouse"):
        engines, created = build_engines(deployments, settings)
    first = engines["first"]
    assert isinstance(first, UnavailableEngine) and isinstance(engines["second"], OpenAIUpstream) and len(created) == 3
    problems = engine_problems(engines)
    assert set(problems) == {"first", "unset"}
    assert "deployment 'first'" in problems["first"] and str(bad) in problems["first"] and "NUL" in problems["first"]
    assert "NOT_SET_ANYWHERE_FOR_TESTS" in problems["unset"]
    logged = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(logged) == 2 and all("first" in m or "unset" in m for m in logged)
    clean(" ".join(caplog.messages) + " ".join(problems.values()) + repr(first))

    with pytest.raises(EngineFailure) as failed:
        asyncio.run(first.call("chat/completions", {}, False))
    assert failed.value.kind == "credential"
    with pytest.raises(EngineFailure):
        asyncio.run(first.count_tokens("hello"))
    route = {"first": first, "unset": engines["unset"], "second": Answering()}
    name, reply, attempts = asyncio.run(dispatch(["first", "unset", "second"], route, "chat/completions", {}, False))
    assert name == "second" and [str(a) for a in attempts] == ["first=credential", "unset=credential"]

    bad.write_text("now-fixed")  # the next version's load reads it again: an unavailable engine is never kept
    again, rebuilt = build_engines(deployments, settings, reuse={n: (deployments[n], e) for n, e in engines.items()})
    assert isinstance(again["first"], OpenAIUpstream) and again["second"] is engines["second"]
    assert {e.name for e in rebuilt} == {"first", "unset"}
