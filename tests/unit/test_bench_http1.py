"""The load generator's HTTP/1.1 response parser reads the same response however TCP splits it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.bench.http1 import HttpError, ResponseParser

KEEP = {"content-length", "transfer-encoding", "connection", "x-gatehouse-request-id"}


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


RESPONSES = {
    "length": (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Gatehouse-Request-Id: req_1\r\n\r\nhello world",
               [b"hello world"], True),
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"data: a\n\n", b"data: [DONE]\n\n"),
                [b"data: a\n\n", b"data: [DONE]\n\n"], True),
    "trailers": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=1\r\nx\r\n0\r\nT: 1\r\n\r\n", [b"x"], True),
    "empty": (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", [], True),
    "closing": (b"HTTP/1.1 429 Too Many\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", [b"{}"], False),
}


def parse(raw: bytes, cuts: list[int]) -> tuple[ResponseParser, list, bytes]:
    heads, body = [], bytearray()
    parser = ResponseParser(KEEP, heads.append, body.extend)
    start = 0
    for cut in sorted(set(cuts)) + [len(raw)]:
        if cut > start:
            parser.feed(raw[start:cut])
            start = cut
    return parser, heads, bytes(body)


@pytest.mark.parametrize("name", list(RESPONSES))
def test_whole_responses(name):
    raw, pieces, keep_alive = RESPONSES[name]
    parser, heads, body = parse(raw, [])
    assert parser.complete and parser.keep_alive is keep_alive
    assert len(heads) == 1 and body == b"".join(pieces)


def test_head_fields():
    parser, [head], _ = parse(RESPONSES["length"][0], [])
    assert head.status == 200 and head.headers["x-gatehouse-request-id"] == "req_1"


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(list(RESPONSES)), cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=12))
def test_any_split_reads_the_same(name, cuts):
    raw, pieces, keep_alive = RESPONSES[name]
    parser, heads, body = parse(raw, [c for c in cuts if c < len(raw)])
    assert parser.complete and len(heads) == 1
    assert body == b"".join(pieces) and parser.keep_alive is keep_alive


def test_body_to_the_end_of_the_connection():
    parser, _, body = parse(b"HTTP/1.0 200 OK\r\n\r\npartial", [])
    assert not parser.complete and body == b"partial" and not parser.keep_alive
    assert parser.connection_closed()


def test_cut_off_chunked_body_is_not_complete():
    parser, _, _ = parse(RESPONSES["chunked"][0][:-7], [])
    assert not parser.complete and not parser.connection_closed()


@pytest.mark.parametrize("raw, message", [
    (b"SMTP ready\r\n\r\n", "not an HTTP response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
])
def test_garbage_is_an_error(raw, message):
    with pytest.raises(HttpError, match=message):
        parse(raw, [])
