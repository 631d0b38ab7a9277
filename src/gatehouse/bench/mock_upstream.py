"""A fast, faithful fake of an OpenAI-compatible engine, for measuring and testing the gateway.

``/v1/...`` behaves as configured; ``/<behaviour>/v1/...`` forces one behaviour per base
URL, so one process can stand in for a healthy upstream and several broken ones:

- ``ok``: answers (streams ``max_tokens`` tokens, default 16)
- ``echo``: answers with the last message or prompt in 3-character tokens (decoded first when it
  starts with ``base64:``, as often as it does, so a test can make the model "say" what the input
  rules would catch: they decode base64 only ``ENCODED_DEPTH`` levels deep)
- ``fail500``, ``fail503``: answers with that status
- ``ratelimit``: answers 429 with ``Retry-After: 2``
- ``reject400``: refuses the request as a bad one
- ``unauthorized``: answers 401, as an engine does to a wrong credential
- ``slow``: waits ``slow_seconds`` before answering
- ``badjson``: answers 200 with a body that is not JSON
- ``drop``: closes the stream after the first tokens (a mid-stream failure)
- ``fields``: as ``echo``, but says it in every field a model can fill: ``reasoning_content``,
  ``content`` and a tool call's arguments (``{"text": …}``), streamed or not, with
  ``logprobs`` whether asked or not — so a test can see what reaches a caller in each

With ``ok``, ``failure_rate``, ``drop_rate`` and ``slow_rate`` turn that share of requests into
``fail500``, ``drop`` and ``slow`` at random.

Control endpoints, for tests and ``gatehouse bench run``:

- ``POST /{behaviour}/tokenize``: vLLM's tokenizer endpoint (3-character tokens; 503 unless ``ok``)
- ``GET /_mock/requests``: the last 100 requests' paths, headers and JSON bodies
- ``GET|POST /_mock/config``: read or change the settings while running (fault injection)
- ``POST|GET /_mock/webhook``: a webhook sink that keeps the last 100 JSON bodies posted to it
  (stands in for a chat or paging webhook in tests and demos)
- ``GET|DELETE /_mock/timings``: the mock's own timing of each request that carried an
  ``X-Request-Id`` (time to first token and to the end, in ms; the last 200,000), so a load
  generator can tell the gateway's share of the latency from the engine's
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

BEHAVIOURS = ("ok", "fail500", "fail503", "ratelimit", "reject400", "unauthorized", "slow", "badjson", "drop", "echo",
              "fields")


@dataclass
class MockSettings:
    ttft: float = 0.0               # seconds before the first token
    tokens_per_second: float = 0.0  # 0: as fast as possible
    failure_rate: float = 0.0       # share of requests answered 500
    drop_rate: float = 0.0          # share of streams cut off after their first tokens
    slow_rate: float = 0.0          # share of requests delayed by slow_seconds
    slow_seconds: float = 30.0
    model: str = "mock-model"


RATES = ("failure_rate", "drop_rate", "slow_rate")
ADJUSTABLE = {"ttft", "tokens_per_second", "slow_seconds", *RATES}


def _checked_change(change: Any) -> dict[str, float]:
    if not isinstance(change, dict) or not change or set(change) - ADJUSTABLE:
        raise ValueError(f"send a JSON object with some of {sorted(ADJUSTABLE)}")
    for name, value in change.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (name in RATES and value > 1):
            raise ValueError(f"{name} must be a number of at least 0" + (" and at most 1" if name in RATES else ""))
    return {name: float(value) for name, value in change.items()}


def _prompt_words(body: dict[str, Any]) -> int:
    """The mock's "tokenizer": one token per whitespace-separated word of the prompt."""
    if isinstance(body.get("messages"), list):
        texts = [m.get("content") for m in body["messages"] if isinstance(m, dict)]
    else:
        prompt = body.get("prompt")
        texts = prompt if isinstance(prompt, list) else [prompt]
    return sum(len(text.split()) for text in texts if isinstance(text, str))


def _pick(behaviour: str, settings: MockSettings) -> str:
    if behaviour != "ok":
        return behaviour
    for rate, forced in (("failure_rate", "fail500"), ("drop_rate", "drop"), ("slow_rate", "slow")):
        chance = getattr(settings, rate)
        if chance and random.random() < chance:
            return forced
    return behaviour


def _echo_text(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        text = messages[-1].get("content")
    else:
        text = body.get("prompt")
    text = text if isinstance(text, str) else ""
    while text.startswith("base64:"):  # nested: deeper than the input rules decode
        try:
            text = base64.b64decode(text[7:]).decode()
        except (ValueError, UnicodeDecodeError):
            break
    return text


def _logprobs(words: list[str], chat: bool) -> dict[str, Any]:
    if chat:
        return {"content": [{"token": word, "logprob": -0.1, "bytes": list(word.encode()), "top_logprobs": []}
                            for word in words]}
    return {"tokens": words, "token_logprobs": [-0.1] * len(words), "top_logprobs": None, "text_offset": []}


def _every_field(words: list[str], logprobs: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``fields`` behaviour: (the whole message, the stream's deltas) saying ``words`` in
    reasoning, content and a tool call's arguments."""
    text = "".join(words)
    arguments = orjson.dumps({"text": text}).decode()
    message = {"role": "assistant", "reasoning_content": text, "content": text, "tool_calls": [
        {"id": "call_mock", "type": "function", "function": {"name": "say", "arguments": arguments}}]}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"reasoning_content": word} for word in words]
    deltas += [{"content": word} for word in words]
    deltas.append({"tool_calls": [{"index": 0, "id": "call_mock", "type": "function",
                                   "function": {"name": "say", "arguments": ""}}]})
    deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": arguments[i:i + 3]}}]}
               for i in range(0, len(arguments), 3)]
    return message, [{"delta": delta, **({"logprobs": _logprobs([word], True)} if logprobs else {})}
                     for delta, word in zip(deltas, ["", *words, *words, *[""] * len(deltas)], strict=False)]


def _error(status: int, message: str, code: str) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                      "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def create_mock_app(settings: MockSettings | None = None) -> Starlette:
    settings = settings or MockSettings()
    seen: deque[dict[str, Any]] = deque(maxlen=100)
    timings: deque[tuple[str, float | None, float]] = deque(maxlen=200_000)
    hooks: deque[Any] = deque(maxlen=100)

    async def handle(request: Request) -> Response:
        started = time.perf_counter()
        behaviour = request.path_params.get("behaviour", "ok")
        endpoint = request.path_params["endpoint"]
        request_id = request.headers.get("x-request-id")
        seen_entry: dict[str, Any] = {"path": request.url.path, "headers": dict(request.headers), "body": None}
        seen.append(seen_entry)
        if behaviour not in BEHAVIOURS:
            return _error(404, f"unknown behaviour {behaviour}", "not_found")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "body is not JSON", "invalid_json")
        seen_entry["body"] = body  # what the engine was sent, for tests of what reaches it
        behaviour = _pick(behaviour, settings)
        if behaviour in ("fail500", "fail503"):
            return _error(int(behaviour[-3:]), "mock failure", "mock_failure")
        if behaviour == "ratelimit":
            response = _error(429, "mock rate limit", "rate_limit_exceeded")
            response.headers["retry-after"] = "2"
            return response
        if behaviour == "unauthorized":
            return _error(401, "Incorrect API key provided: sk-...abcd", "invalid_api_key")
        if behaviour == "reject400":
            return _error(400, "mock says this request is invalid", "invalid_value")
        if behaviour == "badjson":
            return Response(b"<html>not json</html>", media_type="application/json")
        if behaviour == "slow":
            await asyncio.sleep(settings.slow_seconds)
        if settings.ttft:
            await asyncio.sleep(settings.ttft)
        if endpoint == "embeddings":
            inputs = body.get("input")
            count = len(inputs) if isinstance(inputs, list) else 1
            return JSONResponse({"object": "list", "model": settings.model, "data": [
                {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(count)],
                "usage": {"prompt_tokens": count, "total_tokens": count}})
        n = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        words = [f"tok{i} " for i in range(n)]
        if behaviour in ("echo", "fields"):  # answers with the prompt, in 3-character tokens ("base64:…" is decoded first)
            text = _echo_text(body)
            words = [text[i:i + 3] for i in range(0, len(text), 3)] or [""]
            n = len(words)
        chat = endpoint == "chat/completions"
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        prompt_tokens = _prompt_words(body)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        asked_logprobs = body.get("logprobs") not in (None, False) or behaviour == "fields"  # as an engine might, asked or not
        message, deltas = _every_field(words, asked_logprobs) if behaviour == "fields" else (None, None)
        if not body.get("stream"):
            choice = ({"index": 0, "message": {"role": "assistant", "content": "".join(words)}, "finish_reason": "length"}
                      if chat else {"index": 0, "text": "".join(words), "finish_reason": "length"})
            if message is not None:
                choice = ({"index": 0, "message": message, "finish_reason": "tool_calls"} if chat
                          else {**choice, "finish_reason": "stop"})
                if asked_logprobs:
                    choice["logprobs"] = _logprobs(words, chat)
            response = JSONResponse({"id": ident, "object": "chat.completion" if chat else "text_completion",
                                     "created": created, "model": settings.model, "choices": [choice], "usage": usage})
            if request_id:
                elapsed = (time.perf_counter() - started) * 1000
                timings.append((request_id, None, elapsed))
                response.headers["x-request-id"] = request_id
            return response
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def events() -> AsyncIterator[bytes]:
            first = None
            if deltas is not None and chat:  # the fields behaviour: every field, then the tool call
                for extra in deltas:
                    yield b"data: " + orjson.dumps({"id": ident, "object": "chat.completion.chunk", "created": created,
                                                     "model": settings.model,
                                                     "choices": [{"index": 0, "finish_reason": None, **extra}]}) + b"\n\n"
                yield b"data: " + orjson.dumps({"id": ident, "object": "chat.completion.chunk", "created": created,
                                                 "model": settings.model, "choices": [
                                                     {"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}) + b"\n\n"
                yield b"data: [DONE]\n\n"
                return
            for index, word in enumerate(words):
                if behaviour == "drop" and index == 2:
                    await asyncio.sleep(0.2)  # the first tokens reach the client before the engine "dies"
                    raise ConnectionResetError("mock drops the stream")
                delta = {"content": word} if chat else None
                choice = {"index": 0, "delta": delta, "finish_reason": None} if chat else {"index": 0, "text": word, "finish_reason": None}
                yield b"data: " + orjson.dumps({"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                                                 "created": created, "model": settings.model, "choices": [choice]}) + b"\n\n"
                if first is None:
                    first = (time.perf_counter() - started) * 1000
                if settings.tokens_per_second:
                    await asyncio.sleep(1 / settings.tokens_per_second)
            last = {"index": 0, "delta": {}, "finish_reason": "length"} if chat else {"index": 0, "text": "", "finish_reason": "length"}
            yield b"data: " + orjson.dumps({"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                                             "created": created, "model": settings.model, "choices": [last]}) + b"\n\n"
            if include_usage:
                yield b"data: " + orjson.dumps({"id": ident, "object": "chat.completion.chunk", "created": created,
                                                 "model": settings.model, "choices": [], "usage": usage}) + b"\n\n"
            yield b"data: [DONE]\n\n"
            if request_id:
                timings.append((request_id, first, (time.perf_counter() - started) * 1000))

        headers = {"x-request-id": request_id} if request_id else None
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": settings.model, "object": "model", "created": 0,
                                                        "owned_by": "mock"}]})

    async def requests_seen(request: Request) -> Response:
        return JSONResponse(list(seen))

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                change = _checked_change(orjson.loads(await request.body()))
            except (ValueError, orjson.JSONDecodeError) as exc:
                return _error(400, str(exc), "invalid_value")
            for name, value in change.items():
                setattr(settings, name, value)
        return JSONResponse({name: getattr(settings, name) for name in sorted(ADJUSTABLE)})

    async def webhook(request: Request) -> Response:
        if request.method == "POST":
            try:
                hooks.append(orjson.loads(await request.body()))
            except orjson.JSONDecodeError:
                return _error(400, "body is not JSON", "invalid_json")
            return Response(status_code=204)
        return JSONResponse(list(hooks))

    async def timings_seen(request: Request) -> Response:
        if request.method == "DELETE":
            timings.clear()
            return Response(status_code=204)
        return Response(orjson.dumps([{"id": i, "ttft_ms": ttft, "e2e_ms": e2e} for i, ttft, e2e in timings]),
                        media_type="application/json")

    async def tokenize(request: Request) -> Response:
        """vLLM's /tokenize: the mock's tokens are 3-character pieces, as it streams them."""
        if request.path_params["behaviour"] != "ok":
            return Response(status_code=503)
        body = orjson.loads(await request.body())
        seen.append({"path": request.url.path, "headers": dict(request.headers), "body": body})
        prompt = body.get("prompt", "")
        count = (len(prompt) + 2) // 3
        return Response(orjson.dumps({"count": count, "tokens": list(range(count)), "max_model_len": 4096}),
                        media_type="application/json")

    return Starlette(routes=[
        Route("/_mock/requests", requests_seen),
        Route("/_mock/config", config, methods=["GET", "POST"]),
        Route("/_mock/timings", timings_seen, methods=["GET", "DELETE"]),
        Route("/_mock/webhook", webhook, methods=["GET", "POST"]),
        Route("/v1/models", models),
        Route("/{behaviour}/v1/models", models),
        Route("/{behaviour}/tokenize", tokenize, methods=["POST"]),
        Route("/v1/{endpoint:path}", handle, methods=["POST"]),
        Route("/{behaviour}/v1/{endpoint:path}", handle, methods=["POST"]),
    ])
