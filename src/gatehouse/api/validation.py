"""Read request bodies: a clear 400 or 413, never a 500; the same size cap whether the body
says its length or comes chunked, and one nesting limit (``MAX_DEPTH``) for every body, so
what is accepted here can always be walked, stored and forwarded. What each field of an
inference request may hold is ``api.request_model``'s."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from gatehouse.api.errors import ApiError

MAX_DEPTH = 64  # arrays and objects inside one another; orjson parses 1,024 and writes 254
TIMED_OUT = "gatehouse.body_timeout"  # a scope extension the server sets ({"seconds": limit}) when its body timer ran out
OFF_LOOP_BYTES = 64 * 1024  # bodies larger than this, as received (chunked or not), are parsed and checked in a thread


async def read_json_body(request: Request, max_bytes: int) -> tuple[dict[str, Any], int]:
    """A JSON object and its size in bytes as received (chunked or not)."""
    raw, body = await read_json_body_any(request, max_bytes)
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", "invalid_json")
    return body, len(raw)


def nesting_problem(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """Where ``value`` nests deeper than ``limit`` (a JSON path of indices and positions, never
    a key's text), or None. Iterative, depth first: no recursion whatever the depth, and only the
    current path is held (a path per pending container would cost gigabytes for a wide body)."""
    if not isinstance(value, dict | list):
        return None
    if limit <= 0:
        return "the body"
    path: list[tuple[bool, int]] = []  # (in an object, position) of each container above the one walked
    stack: list[tuple[bool, Iterator[tuple[int, Any]]]] = [_children(value)]
    while stack:
        in_object, children = stack[-1]
        for position, child in children:
            if isinstance(child, dict | list):
                if len(stack) >= limit:  # the child is len(stack) deep
                    return "".join(_step(*at) for at in [*path, (in_object, position)]).lstrip(".")
                if child:  # an empty one holds nothing deeper
                    path.append((in_object, position))
                    stack.append(_children(child))
                    break
        else:
            stack.pop()
            if path:
                path.pop()
    return None


def _children(item: dict[str, Any] | list[Any]) -> tuple[bool, Iterator[tuple[int, Any]]]:
    return (True, enumerate(item.values())) if isinstance(item, dict) else (False, enumerate(item))


def _step(in_object: bool, position: int) -> str:
    return f".<key {position}>" if in_object else f"[{position}]"


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
        timed_out = (request.scope.get("extensions") or {}).get(TIMED_OUT)
        if timed_out is not None:  # the server's body timer, which has answered 408 and closed the connection
            raise ApiError(408, f"the request's body did not arrive within {timed_out['seconds']:g} s",
                           "request_timeout") from None
        raise ApiError(499, "the client closed the connection while sending the body", "client_disconnected") from None
    raw = b"".join(chunks)
    if not raw:
        raise ApiError(400, "request body is empty: send a JSON object", "invalid_json")
    # a large body takes milliseconds to parse and measure: off the event loop, as its scan is
    return raw, await asyncio.to_thread(parse_json, raw) if len(raw) > OFF_LOOP_BYTES else parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """The JSON value of ``raw``, nested at most ``MAX_DEPTH`` deep, or a 400."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc.msg} at position {exc.pos}", "invalid_json") from None
    deep = nesting_problem(value)
    if deep is not None:
        shown = deep if len(deep) <= 120 else deep[:120] + "…"
        raise ApiError(400, f"request body nests arrays and objects more than {MAX_DEPTH} deep (at {shown})",
                       "nesting_too_deep", shown)
    return value


def check_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model: required, the name of a model alias (see GET /v1/models)", "missing_model", "model")
    if len(model) > 200 or not model.isprintable():
        raise ApiError(400, "model: an alias name is at most 200 printable characters", "invalid_value", "model")
    return model
