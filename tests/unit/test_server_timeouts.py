"""The server's read timeouts: their settings and the 408 they answer (the protocol itself is
exercised through a real gateway in tests/e2e/test_request_fields.py)."""

from __future__ import annotations

import orjson
import pytest

from gatehouse.app.server import DEFAULT_BODY_TIMEOUT, seconds, timeout_response


@pytest.mark.parametrize(("value", "expected"), [
    (None, DEFAULT_BODY_TIMEOUT), ("", DEFAULT_BODY_TIMEOUT), ("2.5", 2.5), ("0", DEFAULT_BODY_TIMEOUT),
    ("-1", DEFAULT_BODY_TIMEOUT), ("inf", DEFAULT_BODY_TIMEOUT), ("nan", DEFAULT_BODY_TIMEOUT),
    ("soon", DEFAULT_BODY_TIMEOUT), ("1e9", DEFAULT_BODY_TIMEOUT),
])
def test_a_timeout_setting_is_a_positive_finite_number_of_seconds_or_the_default(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("GATEHOUSE_BODY_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("GATEHOUSE_BODY_TIMEOUT", value)
    assert seconds("GATEHOUSE_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT) == expected


def test_the_408_is_complete_http_in_the_api_error_shape():
    head, body = timeout_response("body", 2).split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 408 Request Timeout" and b"connection: close" in lines
    assert f"content-length: {len(body)}".encode() in lines
    assert orjson.loads(body) == {"error": {"message": "the request's body did not arrive within 2 s",
                                            "type": "invalid_request_error", "param": None, "code": "request_timeout"}}
