"""Every error a caller can meet, in the OpenAI error shape, with the right status."""

import threading
import time
from datetime import timedelta

import httpx
import openai
import pytest

from gatehouse.identity import service

from gateway_support import ACTOR

HELLO = [{"role": "user", "content": "hello"}]


def error_of(call):
    with pytest.raises(openai.APIStatusError) as info:
        call()
    error = info.value
    body = error.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert error.response.headers["x-gatehouse-request-id"].startswith("req_")
    return error.status_code, body["error"]["code"], body["error"]["message"], error.response


def raw_post(gateway, key, body: bytes, path="/v1/chat/completions", **headers):
    return httpx.post(f"{gateway.url}{path}", content=body,
                      headers={"authorization": f"Bearer {key}", "content-type": "application/json", **headers})


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_api_key"),
    ({"authorization": "Basic dXNlcjpwdw=="}, "invalid_api_key"),
    ({"authorization": "Bearer sk-not-ours"}, "invalid_api_key"),
    ({"authorization": "Bearer gth_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBCCCCCC"}, "invalid_api_key"),
])
def test_401_for_keys_that_are_not_ours(gateway, headers, code):
    response = httpx.get(f"{gateway.url}/v1/models", headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == code
    assert response.json()["error"]["type"] == "authentication_error"


def test_401_for_a_well_formed_unknown_key(make_client):
    from gatehouse.core.keyformat import generate_key

    key = generate_key().text
    status, code, message, _ = error_of(lambda: make_client(key).chat.completions.create(model="chat-small", messages=HELLO))
    assert (status, code) == (401, "invalid_api_key")
    assert key[17:49] not in message  # the secret is never echoed


def test_401_for_a_revoked_key(make_client, fresh_key, gateway_home):
    key = fresh_key()
    client = make_client(key)
    assert client.models.list()
    service.revoke_key(gateway_home.db, ACTOR, key[4:16], "test")
    time.sleep(0.6)
    assert error_of(lambda: client.models.list())[:2] == (401, "revoked_api_key")


def test_401_for_an_expired_key(make_client, fresh_key):
    client = make_client(fresh_key(ttl=timedelta(seconds=2)))
    assert client.models.list()
    time.sleep(2.1)
    assert error_of(lambda: client.chat.completions.create(model="chat-small", messages=HELLO))[:2] == (401, "expired_api_key")


def test_403_for_an_alias_not_granted(client):
    status, code, message, _ = error_of(lambda: client.chat.completions.create(model="secret-model", messages=HELLO))
    assert (status, code) == (403, "model_not_granted") and "e2e-app" in message


def test_403_for_an_alias_outside_the_key_scopes(make_client, fresh_key):
    scoped = make_client(fresh_key(scopes=["mock-chat"]))
    assert error_of(lambda: scoped.chat.completions.create(model="chat-small", messages=HELLO))[:2] == (403, "model_not_granted")


def test_404_for_an_unknown_model(client):
    assert error_of(lambda: client.chat.completions.create(model="gpt-5", messages=HELLO))[:2] == (404, "model_not_found")
    assert error_of(lambda: client.models.retrieve("gpt-5"))[:2] == (404, "model_not_found")


@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b"", None),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "chat-small"}', "messages"),
    (b'{"model": "chat-small", "messages": []}', "messages"),
    (b'{"model": "chat-small", "messages": [{"role": "robot", "content": "x"}]}', "messages[0].role"),
    (b'{"model": "chat-small", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
    (b'{"model": "chat-small", "messages": [{"role": "user", "content": "x"}], "temperature": 9}', "temperature"),
    (b'{"model": "chat-small", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', "max_tokens"),
    (b'{"model": "chat-small", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}', "max_tokens"),
    (b'{"model": "chat-small", "messages": [{"role": "user", "content": "x"}], "stop": [1]}', "stop"),
    (b'{"model": "chat-small", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
    (b'{"model": "chat-small", "messages": [{"role": "user", "content": "x"}], "n": 2}', "n"),
    (b'{"model": "chat-small", "messages": [{"role": ["user"], "content": "x"}]}', "messages[0].role"),
    (b'{"model": "' + b"m" * 250 + b'", "messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "a\\u0000b", "messages": [{"role": "user", "content": "x"}]}', "model"),
])
def test_400_for_malformed_bodies(gateway, dev_key, body, param):
    response = raw_post(gateway, dev_key, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"]


def test_400_for_bad_completion_prompts(gateway, dev_key):
    response = raw_post(gateway, dev_key, b'{"model": "chat-small", "prompt": [99999999]}', path="/v1/completions")
    assert response.status_code == 400 and response.json()["error"]["param"] == "prompt"
    response = raw_post(gateway, dev_key, b'{"model": "chat-small", "prompt": {"a": 1}}', path="/v1/completions")
    assert response.status_code == 400


def test_400_when_the_prompt_does_not_fit_the_context(client):
    long_prompt = "tell me about the sea " * 400
    status, code, message, _ = error_of(lambda: client.chat.completions.create(
        model="chat-small", messages=[{"role": "user", "content": long_prompt}]))
    assert (status, code) == (400, "context_length_exceeded") and "1024" in message
    status, code, _, _ = error_of(lambda: client.chat.completions.create(
        model="chat-small", messages=HELLO, max_tokens=5000))
    assert (status, code) == (400, "context_length_exceeded")


def test_400_for_an_endpoint_the_deployment_does_not_serve(client):
    assert error_of(lambda: client.embeddings.create(model="chat-small", input="x"))[:2] == (400, "unsupported_endpoint")


def test_413_for_a_body_over_the_limit(gateway, dev_key):
    big = b'{"model": "chat-small", "messages": [{"role": "user", "content": "' + b"x" * 70_000 + b'"}]}'
    response = raw_post(gateway, dev_key, big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

    def chunked():
        yield big[:1000]
        yield big[1000:]

    response = httpx.post(f"{gateway.url}/v1/chat/completions", content=chunked(),
                          headers={"authorization": f"Bearer {dev_key}"})
    assert response.status_code == 413


def test_429_when_every_upstream_is_rate_limited(client):
    status, code, _, response = error_of(lambda: client.chat.completions.create(model="limited", messages=HELLO))
    assert (status, code) == (429, "capacity_exceeded") and response.headers["retry-after"] == "2"


def test_429_when_the_embedded_queue_is_full(client, make_client, dev_key):
    started = threading.Event()
    results = []

    def long_stream():
        stream = client.chat.completions.create(model="busy-small", messages=HELLO, max_tokens=60, stream=True)
        for _ in stream:
            started.set()
        results.append("done")

    worker = threading.Thread(target=long_stream)
    worker.start()
    assert started.wait(30)
    status, code, _, response = error_of(lambda: client.chat.completions.create(model="busy-small", messages=HELLO))
    assert (status, code) == (429, "capacity_exceeded") and int(response.headers["retry-after"]) >= 1
    worker.join(60)
    assert results == ["done"]


def test_400_from_an_upstream_is_passed_on_without_fallback(client):
    status, code, message, response = error_of(lambda: client.chat.completions.create(model="rejecting", messages=HELLO))
    assert (status, code, message) == (400, "invalid_value", "mock says this request is invalid")
    assert response.headers["x-gatehouse-deployment"] == "mock-400"  # who refused it, in the record too


def test_502_when_upstreams_fail(client):
    status, code, message, response = error_of(lambda: client.chat.completions.create(model="broken", messages=HELLO))
    assert (status, code) == (502, "upstream_unavailable")
    assert response.headers["x-gatehouse-fallbacks"] == "mock-500=http_500, mock-badjson=bad_response"


def test_503_when_no_upstream_can_be_reached(client):
    status, code, _, response = error_of(lambda: client.chat.completions.create(model="down", messages=HELLO))
    assert (status, code) == (503, "upstream_unavailable")
    assert response.headers["x-gatehouse-fallbacks"] == "refused=connect"


def test_504_when_the_upstream_is_too_slow(client):
    started = time.monotonic()
    status, code, _, _ = error_of(lambda: client.chat.completions.create(model="slow", messages=HELLO))
    assert (status, code) == (504, "upstream_unavailable")
    assert time.monotonic() - started < 4  # the deployment's first_token timeout is 1 s


def test_mid_stream_failure_ends_the_stream_with_an_error(client):
    stream = client.chat.completions.create(model="dropping", messages=HELLO, max_tokens=10, stream=True)
    received = []
    with pytest.raises(openai.APIError, match="mid-stream"):
        for chunk in stream:
            received.append(chunk)
    assert len(received) >= 1


def test_unknown_routes_and_methods_answer_in_the_openai_shape(gateway, dev_key):
    response = httpx.get(f"{gateway.url}/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = httpx.get(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {dev_key}"})
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_a_credential_the_upstream_refuses_falls_back_and_is_never_echoed(client):
    raw = client.chat.completions.with_raw_response.create(model="bad-credential", messages=HELLO, max_tokens=2)
    assert raw.headers["x-gatehouse-deployment"] == "mock-ok"
    assert raw.headers["x-gatehouse-fallbacks"] == "mock-401=upstream_auth"
    status, code, message, _ = error_of(lambda: client.chat.completions.create(model="only-bad-credential",
                                                                               messages=HELLO))
    assert (status, code) == (502, "upstream_unavailable")  # not 401: the caller's own key is fine
    assert "sk-" not in message and "Incorrect API key" not in message
