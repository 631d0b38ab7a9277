"""Fallback through real broken upstreams, and decision records flushed on shutdown."""

import sqlite3
import uuid

import openai
import pytest

from helpers import start_gateway

HELLO = [{"role": "user", "content": "hello"}]


def test_fallback_skips_broken_upstreams_and_says_so(client):
    raw = client.chat.completions.with_raw_response.create(model="fallback-chat", messages=HELLO, max_tokens=4)
    reply = raw.parse()
    assert raw.headers["x-gatehouse-deployment"] == "embedded-gemma"
    assert raw.headers["x-gatehouse-fallbacks"] == "mock-500=http_500, refused=connect"
    assert reply.choices[0].message.content is not None and reply.usage.completion_tokens >= 1


def test_fallback_happens_before_the_first_streamed_byte(client):
    raw = client.chat.completions.with_raw_response.create(model="fallback-chat", messages=HELLO, max_tokens=4,
                                                           stream=True)
    assert raw.headers["x-gatehouse-deployment"] == "embedded-gemma"
    chunks = list(raw.parse())
    assert any(c.choices and c.choices[0].delta.content for c in chunks)


def test_decision_records_are_flushed_on_graceful_shutdown(tmp_path, mock_upstream, refused_port,
                                                           shared_models_dir, logs):
    from openai import OpenAI

    from gateway_support import Deployment, mock_route_policy, wait_until_accepted

    policy = mock_route_policy(mock_upstream.url, "fail503", "ok")
    home = Deployment(tmp_path / "home", policy, shared_models_dir)
    home.identity("recorded-app")
    key = home.key("recorded-app")
    gateway = start_gateway(home.env, logs, name="records")
    try:
        wait_until_accepted(gateway, key)
        client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        marker = f"secret-prompt-{uuid.uuid4().hex}"
        ids = []
        for stream in (False, True, False):
            raw = client.chat.completions.with_raw_response.create(
                model="chat", messages=[{"role": "user", "content": marker}], max_tokens=3, stream=stream)
            ids.append(raw.headers["x-gatehouse-request-id"])
            if stream:
                list(raw.parse())
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope", messages=HELLO)
    finally:
        gateway.stop()  # SIGTERM: uvicorn drains, then the lifespan flushes the buffers
    assert "Application shutdown complete" in gateway.log()
    connection = sqlite3.connect(home.home / "gatehouse.db")
    rows = connection.execute(
        "SELECT request_id, identity, key_id, alias, deployment, fallbacks, policy_version, status, stream, "
        "prompt_tokens, completion_tokens, latency_ms FROM decision_records ORDER BY ts").fetchall()
    connection.close()
    by_id = {row[0]: row for row in rows}
    assert set(ids) <= set(by_id) and len(rows) == 4
    for request_id, stream in zip(ids, (False, True, False), strict=True):
        _, identity, key_id, alias, deployment, fallbacks, version, status, streamed, prompt, completion, latency = by_id[request_id]
        assert (identity, key_id, alias, deployment, status) == ("recorded-app", key[4:16], "chat", "ok", 200)
        assert fallbacks == '["fail503=http_503"]' and version == home.policy_version
        assert bool(streamed) == stream and completion == 3 and prompt == 1 and latency > 0  # the mock counts words
    assert any(row[7] == 404 and row[3] == "nope" for row in rows)
    database_bytes = (home.home / "gatehouse.db").read_bytes()
    wal = home.home / "gatehouse.db-wal"
    database_bytes += wal.read_bytes() if wal.exists() else b""
    assert marker.encode() not in database_bytes  # no prompt text is stored
    assert key[17:49].encode() not in database_bytes  # nor any key secret
    assert marker not in gateway.log() and key not in gateway.log()
