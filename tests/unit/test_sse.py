from gatehouse.core.sse import split_events
from gatehouse.engines.openai_upstream import retry_after_seconds


def test_events_are_cut_at_blank_lines_whatever_the_chunking():
    stream = b'data: {"a":1}\n\ndata: {"b":2}\r\n\r\ndata: [DONE]\n\n'
    for size in (1, 3, 7, len(stream)):
        buffer, events = bytearray(), []
        for start in range(0, len(stream), size):
            buffer.extend(stream[start:start + size])
            events += split_events(buffer)
        assert events == [b'data: {"a":1}\n\n', b'data: {"b":2}\n\n', b"data: [DONE]\n\n"]
        assert buffer == b""


def test_incomplete_event_stays_in_the_buffer():
    buffer = bytearray(b'data: {"a":1}\n\ndata: {"b"')
    assert split_events(buffer) == [b'data: {"a":1}\n\n']
    assert buffer == b'data: {"b"'


def test_retry_after_is_parsed_defensively():
    assert [retry_after_seconds(v) for v in ("2", None, "", "soon", "\u00b2", "-5", "999999")] == [2, 1, 1, 1, 1, 1, 3600]
