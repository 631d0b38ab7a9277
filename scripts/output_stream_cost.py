"""What the output guardrails add to a stream: an answer streamed in 3-character chunks through
the gateway's StreamGuard (PII redact, secrets block, output on), timed in process: ordinary
prose, prose with reasoning and tool-call arguments, and the worst cases the hold allows (one
unbroken token run up to the hold's bound, a private key block).

    .venv/bin/python scripts/output_stream_cost.py [REPEATS]
"""

import asyncio
import statistics
import sys
import time

import orjson

from gatehouse.core.sse import SSE_DONE, sse_event
from gatehouse.guardrails.hold import LIMIT
from gatehouse.guardrails.output import StreamGuard
from gatehouse.guardrails.profiles import ProfileIndex
from gatehouse.guardrails.schema import Guardrails

PROFILE = ProfileIndex(Guardrails.model_validate({"profiles": {"p": {
    "output": True, "pii": {"action": "redact"}, "secrets": {"action": "block"}}}})).profiles["p"]
PROSE = ("the team reviewed quarterly revenue and customer feedback before the planning meeting while engineering "
         "shipped a fix for the login page, write to jane.doe@example.com for details. ") * 20


def events(field: str, text: str) -> list[bytes]:
    def chunk(delta: dict) -> bytes:
        return sse_event(orjson.dumps({"id": "c", "object": "chat.completion.chunk",
                                       "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
    pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
    if field == "arguments":
        out = [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces]
    else:
        out = [chunk({field: p}) for p in pieces]
    return [*out, sse_event(orjson.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})), SSE_DONE]


def run(stream: list[bytes]) -> float:
    async def source():  # type: ignore[no-untyped-def]
        for event in stream:
            yield event

    async def drain() -> None:
        async for _ in StreamGuard(PROFILE).wrap(source()):
            pass
    started = time.perf_counter()
    asyncio.run(drain())
    return time.perf_counter() - started


def main(repeats: int) -> None:
    cases = {
        "prose content": events("content", PROSE),
        "prose content, not ASCII": events("content", PROSE.replace("a", "ä").replace("e", "é")),
        "prose in reasoning_content": events("reasoning_content", PROSE),
        "prose in tool-call arguments": events("arguments", PROSE),
        f"one {LIMIT}-char token run (hits the bound)": events("content", "Zq8x" * (LIMIT // 4 + 1)),
        "a 3.2 KB private key block": events("content", "-----BEGIN RSA PRIVATE KEY-----\n"
                                             + "MIIEpAIBAAKCAQEA7bqXYZ0123456789abcdefghijklmnopqrstuvwx\n" * 58
                                             + "-----END RSA PRIVATE KEY-----"),
    }
    for name, stream in cases.items():
        chunks = len(stream) - 2
        timings = [run(stream) for _ in range(repeats)]
        median = statistics.median(timings)
        print(f"{name}: {chunks} chunks, median {median * 1000:.1f} ms per stream, "
              f"{median / chunks * 1e6:.1f} µs per chunk")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
