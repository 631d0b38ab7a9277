"""A deployment whose credential a header cannot carry (a line break, a NUL, a DEL), or that is
missing, through a real gateway: the version still loads, requests go on to the next deployment
of the route and say so in ``x-gatehouse-fallbacks``, a route with nothing else left answers a
502 in the error shape, never a 500, and the value is in no answer, log or upstream request."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from gateway_support import MOCK_CREDENTIAL, Deployment, wait_until_accepted
from helpers import start_gateway

LEFT, RIGHT = "sk-LEFTHALF", "RIGHTHALF99"
METRICS_TOKEN = "metrics-token-for-credential-tests"
BAD = {"newline": f"{LEFT}\n{RIGHT}\n", "nul": f"{LEFT}\x00{RIGHT}", "del": f"{LEFT}\x7f{RIGHT}"}
HELLO = [{"role": "user", "content": "hello"}]


def policy(mock: str, home) -> str:  # type: ignore[no-untyped-def]  # home: a Path
    files = "\n".join(
        f"  {name}-cred: {{engine: vllm, url: '{mock}/ok/v1', model: m, credential: {{file: '{home}/credentials/{name}'}}}}"
        for name in BAD)
    return f"""\
version: 1
deployments:
{files}
  missing-cred: {{engine: vllm, url: '{mock}/ok/v1', model: m, credential: {{file: '{home}/credentials/missing'}}}}
  unset-cred: {{engine: vllm, url: '{mock}/ok/v1', model: m, credential: {{env: NOT_SET_ANYWHERE_FOR_TESTS}}}}
  good: {{engine: vllm, url: '{mock}/ok/v1', model: mock-served-model, credential: {{env: MOCK_UPSTREAM_KEY}}}}
aliases:
  chat: {{route: [newline-cred, good]}}
  every-kind: {{route: [nul-cred, del-cred, missing-cred, unset-cred, good]}}
  nothing-left: {{route: [newline-cred]}}
grants:
  - {{name: dev, subjects: [{{environment: dev}}], aliases: [chat, every-kind, nothing-left]}}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_models_dir, mock, logs, monkeypatch_module):
    root = tmp_path_factory.mktemp("credentials") / "home"
    (root / "credentials").mkdir(parents=True)
    for name, value in BAD.items():
        (root / "credentials" / name).write_bytes(value.encode())
    monkeypatch_module.delenv("NOT_SET_ANYWHERE_FOR_TESTS", raising=False)
    home = Deployment(root, policy(mock.url, root), shared_models_dir, GATEHOUSE_METRICS_TOKEN=METRICS_TOKEN)
    key = home.key(home.identity("app"))
    gateway = start_gateway(home.env, logs, name="credential-gateway")
    wait_until_accepted(gateway, key)
    yield home, gateway, OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)
    gateway.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_next_deployment_answers_and_the_fallback_names_the_bad_one(setup):
    home, gateway, client = setup
    for stream in (False, True):
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=HELLO, max_tokens=3, stream=stream)
        assert raw.http_response.status_code == 200
        assert raw.headers["x-gatehouse-deployment"] == "good"
        assert raw.headers["x-gatehouse-fallbacks"] == "newline-cred=credential"
        if stream:
            assert any(chunk.choices and chunk.choices[0].delta.content for chunk in raw.parse())
        else:
            assert raw.parse().choices[0].message.content
    completion = client.completions.with_raw_response.create(model="chat", prompt="hi", max_tokens=2)
    assert completion.headers["x-gatehouse-fallbacks"] == "newline-cred=credential"


def test_every_kind_of_bad_credential_hands_the_request_on(setup):
    home, gateway, client = setup
    raw = client.chat.completions.with_raw_response.create(model="every-kind", messages=HELLO, max_tokens=3)
    assert raw.headers["x-gatehouse-deployment"] == "good"
    assert raw.headers["x-gatehouse-fallbacks"] == (
        "nul-cred=credential, del-cred=credential, missing-cred=credential, unset-cred=credential")


def test_a_route_with_nothing_else_answers_in_the_error_shape_never_a_500(setup):
    home, gateway, client = setup
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="nothing-left", messages=HELLO, max_tokens=3, stream=stream)
        assert failed.value.status_code == 502
        error = failed.value.response.json()["error"]
        assert error["code"] == "upstream_unavailable" and "newline-cred=credential" in error["message"]
        assert failed.value.response.headers["x-gatehouse-fallbacks"] == "newline-cred=credential"


def test_the_value_is_in_no_log_answer_or_upstream_request_and_the_problem_is_logged_once(setup, mock):
    home, gateway, client = setup
    client.chat.completions.create(model="chat", messages=HELLO, max_tokens=2)
    log = gateway.log()
    for name in ("newline-cred", "nul-cred", "del-cred", "missing-cred", "unset-cred"):
        lines = [line for line in log.splitlines() if f"deployment {name} is unavailable" in line]
        assert len(lines) == 2, (name, lines)  # `serve`'s check before the workers start, then the one worker
    assert "a line break" in log and "a NUL byte" in log and "a control character" in log
    assert "LEFTHALF" not in log and "RIGHTHALF" not in log and "Traceback" not in log
    seen = httpx.get(f"{mock.url}/_mock/requests").json()
    assert seen and all(entry["headers"].get("authorization") == f"Bearer {MOCK_CREDENTIAL}" for entry in seen
                        if "/ok/" in entry["path"])
    assert "LEFTHALF" not in str(seen) and "RIGHTHALF" not in str(seen)
    scraped = httpx.get(f"{gateway.url}/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert 'gatehouse_deployment="newline-cred",gatehouse_reason="credential"' in scraped
