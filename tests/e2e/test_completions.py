"""Real completions from the embedded model through a real gateway, with the stock openai SDK."""

import pytest

from gateway_support import DEV_ALIASES

HELLO = [{"role": "user", "content": "Write a short sentence about the sea."}]


def test_models_lists_exactly_the_granted_aliases(client):
    assert sorted(model.id for model in client.models.list()) == DEV_ALIASES
    assert client.models.retrieve("chat-small").id == "chat-small"


def test_key_scopes_narrow_the_list(make_client, fresh_key):
    scoped = make_client(fresh_key(scopes=["mock-chat", "secret-model"]))
    assert [model.id for model in scoped.models.list()] == ["mock-chat"]  # scopes never widen grants


def test_grants_follow_identity_attributes(make_client, fresh_key, gateway_home):
    gateway_home.identity("research-bot", owner="researcher@example.com", environment="prod")
    research = make_client(fresh_key("research-bot"))
    assert [model.id for model in research.models.list()] == ["secret-model"]


def test_chat_completion_from_the_embedded_model(client, gateway_home):
    raw = client.chat.completions.with_raw_response.create(model="chat-small", messages=HELLO, max_tokens=12)
    reply = raw.parse()
    assert raw.headers["x-gatehouse-deployment"] == "embedded-gemma"
    assert raw.headers["x-gatehouse-fallbacks"] == "none"
    assert raw.headers["x-gatehouse-policy-version"] == gateway_home.policy_version
    assert raw.headers["x-gatehouse-request-id"].startswith("req_")
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert isinstance(reply.choices[0].message.content, str) and reply.choices[0].message.content.strip()
    assert reply.usage.prompt_tokens > 5
    assert 1 <= reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_max_tokens_is_exact_when_the_model_runs_on(client):
    reply = client.completions.create(model="chat-small", prompt="One, two, three, four,", max_tokens=7,
                                      temperature=0)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 7
    assert reply.choices[0].text


def test_temperature_zero_is_deterministic(client):
    texts = {client.completions.create(model="chat-small", prompt="The capital of France is", max_tokens=8,
                                       temperature=0, seed=7).choices[0].text for _ in range(2)}
    assert len(texts) == 1


def test_stop_sequence_cuts_the_text(client):
    stopped = client.completions.create(model="chat-small", prompt="1, 2, 3, 4,", max_tokens=12, temperature=0,
                                        stop=[" 7"])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].text == " 5, 6,"


def test_chat_streams_token_by_token(client):
    stream = client.chat.completions.create(model="chat-small", messages=HELLO, max_tokens=16, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(content) >= 2 and "".join(content).strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["length"], ["stop"])
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].completion_tokens >= len(content) - 1 and usage[0].prompt_tokens > 5


def test_stream_without_usage_request_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="chat-small", messages=HELLO, max_tokens=4, stream=True))
    assert chunks and all(c.usage is None for c in chunks)


def test_legacy_completions_stream(client):
    chunks = list(client.completions.create(model="chat-small", prompt="Once upon a time", max_tokens=6,
                                            stream=True, temperature=0))
    assert "".join(c.choices[0].text for c in chunks if c.choices).strip()
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_stream_matches_the_non_streamed_text_at_temperature_zero(client):
    whole = client.completions.create(model="chat-small", prompt="Water boils at", max_tokens=10, temperature=0)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="chat-small", prompt="Water boils at", max_tokens=10, temperature=0, stream=True) if c.choices)
    assert streamed == whole.choices[0].text


def test_upstream_model_and_credential(client, mock_upstream, dev_key):
    import httpx

    raw = client.chat.completions.with_raw_response.create(model="mock-chat", messages=HELLO, max_tokens=3)
    reply = raw.parse()
    assert raw.headers["x-gatehouse-deployment"] == "mock-ok"
    assert reply.choices[0].message.content == "tok0 tok1 tok2 "
    assert reply.usage.completion_tokens == 3
    seen = httpx.get(f"{mock_upstream.url}/_mock/requests").json()[-1]
    assert seen["headers"]["authorization"] == "Bearer upstream-secret-for-tests"
    assert dev_key not in str(seen)  # the caller's key never reaches an upstream


def test_upstream_stream_passes_through(client):
    chunks = list(client.chat.completions.create(model="mock-chat", messages=HELLO, max_tokens=5, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 tok3 tok4 "
    assert all(c.usage is None for c in chunks)  # the usage chunk we asked for is hidden from this caller


def test_embeddings_pass_through_to_an_upstream_that_has_them(client):
    result = client.embeddings.create(model="mock-chat", input=["a", "b"])
    assert [item.index for item in result.data] == [0, 1]


def test_a_client_that_goes_away_frees_the_engine(client, gateway):
    import time

    import httpx

    headers = {"authorization": f"Bearer {client.api_key}"}
    url = f"{gateway.url}/v1/completions"
    # At temperature 0 this prompt runs on to max_tokens (checked here): about 6 s of work
    # that an abandoned request must not keep doing.
    long = {"model": "busy-small", "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 400, "temperature": 0}
    premise = httpx.post(url, json=long, headers=headers, timeout=60).json()
    assert premise["usage"]["completion_tokens"] == 400 and premise["choices"][0]["finish_reason"] == "length"
    small = {"model": "busy-small", "prompt": "hello", "max_tokens": 2}

    def engine_frees_within(seconds):
        deadline = time.monotonic() + seconds
        while httpx.post(url, json=small, headers=headers).status_code != 200:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    with httpx.stream("POST", url, json={**long, "stream": True}, headers=headers) as response:
        assert response.status_code == 200
        next(response.iter_bytes())
    assert engine_frees_within(2), "the abandoned stream kept the engine busy"

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=long, headers=headers, timeout=0.5)
    assert engine_frees_within(2), "the abandoned request kept the engine busy"
