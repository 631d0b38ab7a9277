"""Read and check OpenAI request bodies: a clear 400 or 413, never a 500."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from gatehouse.api.errors import ApiError

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


async def read_json_body(request: Request, max_bytes: int) -> dict[str, Any]:
    _, body = await read_json_body_any(request, max_bytes)
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", "invalid_json")
    return body


async def read_json_body_any(request: Request, max_bytes: int) -> tuple[bytes, Any]:
    """The raw body (for signatures) and its JSON value, or a 400/413/499."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid Content-Length header", "invalid_request")
        if int(declared) > max_bytes:
            raise ApiError(413, f"request body is {declared} bytes; the limit is {max_bytes}", "request_too_large")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise ApiError(413, f"request body is over the limit of {max_bytes} bytes", "request_too_large")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(499, "the client closed the connection while sending the body", "client_disconnected") from None
    raw = b"".join(chunks)
    if not raw:
        raise ApiError(400, "request body is empty: send a JSON object", "invalid_json")
    try:
        return raw, orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc.msg} at position {exc.pos}", "invalid_json") from None


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", "invalid_value", param)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _bad(name, f"must be a number from {low:g} to {high:g}")


def _integer(body: dict[str, Any], name: str, low: int, high: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise _bad(name, f"must be an integer of at least {low}" + (f" and at most {high}" if high else ""))


def _check_sampling(body: dict[str, Any]) -> None:
    if "stream" in body and not isinstance(body["stream"], bool) and body["stream"] is not None:
        raise _bad("stream", "must be true or false")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise _bad("stream_options", "must be an object")
    _integer(body, "max_tokens", 1)
    _integer(body, "max_completion_tokens", 1)
    _integer(body, "n", 1, 128)
    _integer(body, "top_k", -1)
    _integer(body, "seed", -(2**63), 2**63 - 1)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
            raise _bad("stop", "must be a string or a list of up to 4 non-empty strings")


def check_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model: required, the name of a model alias (see GET /v1/models)", "missing_model", "model")
    if len(model) > 200 or not model.isprintable():
        raise ApiError(400, "model: an alias name is at most 200 printable characters", "invalid_value", "model")
    return model


def check_chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "required, a non-empty list of messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(param, "must be an object with 'role' and 'content'")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise _bad(f"{param}.role", f"must be one of {', '.join(sorted(ROLES))}")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _bad(f"{param}.content", "must be a string or a list of content parts")
        if isinstance(content, list) and not all(isinstance(part, dict) for part in content):
            raise _bad(f"{param}.content", "content parts must be objects")
    _check_sampling(body)


def check_completion(body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    ok = isinstance(prompt, str) or (
        isinstance(prompt, list) and prompt and (
            all(isinstance(p, str) for p in prompt)
            or all(isinstance(p, int) and not isinstance(p, bool) for p in prompt)
            or all(isinstance(p, list) and all(isinstance(t, int) for t in p) for p in prompt)
        )
    )
    if not ok:
        raise _bad("prompt", "required, a string, a list of strings, or a list of token ids")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
        body["prompt"] = [prompt]
    _check_sampling(body)


def check_embeddings(body: dict[str, Any]) -> None:
    value = body.get("input")
    if not (isinstance(value, str) or (isinstance(value, list) and value)):
        raise _bad("input", "required, a string or a non-empty list")


CHECKS = {"chat/completions": check_chat, "completions": check_completion, "embeddings": check_embeddings}
