"""The load generator against servers that misbehave: every oddity is a counted error or is
read correctly, never a crash of the run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from gatehouse.bench.report import build_report
from gatehouse.bench.runner import ScenarioRun, build_plans
from gatehouse.bench.scenario import load_scenario_text


def sse(*events: bytes, crlf: bool = False) -> bytes:
    end = b"\r\n\r\n" if crlf else b"\n\n"
    body = b"".join(b"data: " + event + end for event in events)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def chunk(text: str) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})


USAGE = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
GOOD_STREAM = sse(chunk("a"), chunk("b"), USAGE, b"[DONE]")

ODDITIES = {
    "crlf events": (sse(chunk("a"), chunk("b"), USAGE, b"[DONE]", crlf=True), None),
    "interim 100 Continue first": (b"HTTP/1.1 100 Continue\r\n\r\n" + GOOD_STREAM, None),
    "usage is not an object": (sse(chunk("a"), orjson.dumps({"choices": [], "usage": 5}), b"[DONE]"), "bad_usage"),
    "token count is text": (sse(chunk("a"), orjson.dumps({"choices": [], "usage": {"completion_tokens": "2"}}),
                                b"[DONE]"), "bad_usage"),
    "event is a list": (sse(b"[1, 2]", b"[DONE]"), "bad_event"),
    "choices is a string": (sse(orjson.dumps({"choices": "x"}), b"[DONE]"), "bad_event"),
    "no [DONE]": (sse(chunk("a")), "stream_incomplete"),
    "204 without a length": (b"HTTP/1.1 204 No Content\r\n\r\n", "http_204"),
    "not HTTP": (b"220 smtp.example.com ESMTP\r\n\r\n", "not an HTTP response"),
    "closed without a word": (b"", "connection closed before a response"),
}


async def serve(response: bytes) -> tuple[asyncio.AbstractServer, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                await reader.readexactly(length)
                if not response:
                    break
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def run_against(response: bytes, requests: int = 3) -> dict:
    server, port = await serve(response)
    try:
        scenario = load_scenario_text(f"name: odd\nmodel: m\nrequests: {requests}\ntimeout: 3s\n"
                                      "arrival: {kind: closed, concurrency: 1}\n")
        plans = build_plans(scenario, "k", {}, Path.cwd())
        return build_report(await ScenarioRun(scenario, f"http://127.0.0.1:{port}", plans, Path.cwd()).run())
    finally:
        server.close()


@pytest.mark.parametrize("name", list(ODDITIES))
def test_odd_responses_are_counted_not_fatal(name):
    response, error = ODDITIES[name]
    report = asyncio.run(run_against(response))
    requests = report["requests"]
    assert len(requests) == 3
    if error is None:
        assert report["summary"]["errors"] == 0
        assert all(r["output_tokens"] == 2 and r["ttft_ms"] is not None for r in requests)
    else:
        assert report["summary"]["errors"] == 3
        assert all(error in r["error"] for r in requests), [r["error"] for r in requests]
        assert all(r["e2e_ms"] < 3000 for r in requests)  # none waited for the timeout
