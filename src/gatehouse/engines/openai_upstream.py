"""Any OpenAI-compatible server: vLLM, SGLang, llama-server, Ollama, TGI, another gateway.

Streams are passed through event by event as they arrive, never buffered whole. We ask
the upstream for a usage chunk so tokens can be accounted, and hide that chunk from a
caller who did not ask for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson

from gatehouse.core.sse import split_events
from gatehouse.engines.base import EngineBusy, EngineFailure, EngineReply, UpstreamRejected, Usage
from gatehouse.engines.credentials import CredentialProblem, value_problem
from gatehouse.engines.serving import serves
from gatehouse.engines.spec import Deployment
from gatehouse.telemetry.tracing import UPSTREAM_TRACEPARENT

FALLBACK_STATUSES = {408, 409}
log = logging.getLogger("gatehouse.upstream")


def retry_after_seconds(value: str | None) -> int:
    """An upstream's ``Retry-After`` in whole seconds, 1 to 3600 (1 when absent or not a number)."""
    try:
        return max(1, min(int(value or "1"), 3600))
    except ValueError:
        return 1


def _error_message(content: bytes) -> tuple[str, str | None, str | None]:
    try:
        data = orjson.loads(content)
        error = data.get("error", data) if isinstance(data, dict) else {}
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or ""
            code, param = error.get("code"), error.get("param")
            return (str(message)[:500] or "upstream refused the request",
                    code[:64] if isinstance(code, str) else None, param[:200] if isinstance(param, str) else None)
        if isinstance(error, str):
            return error[:500], None, None
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return "upstream refused the request", None, None


# engine kind → (request body for a text, token count from the answer) of its /tokenize endpoint
TOKENIZERS: dict[str, tuple[Callable[[str, str], dict], Callable[[Any], int]]] = {
    "vllm": (lambda text, model: {"model": model, "prompt": text, "add_special_tokens": False},
             lambda answer: answer["count"]),
    "llama-server": (lambda text, model: {"content": text}, lambda answer: len(answer["tokens"])),
    "tgi": (lambda text, model: {"inputs": text}, lambda answer: len(answer)),
}


class OpenAIUpstream:
    def __init__(self, name: str, deployment: Deployment, api_key: str | None) -> None:
        """``api_key`` goes into every request's Authorization header: one that a header cannot
        carry is refused here (``CredentialProblem``), not on each request as a crash."""
        if api_key is not None and (problem := value_problem(api_key)):
            raise CredentialProblem(f"deployment {name!r}: its credential {problem}")
        self.name = name
        self.deployment = deployment
        self._api_key = api_key
        self._session: aiohttp.ClientSession | None = None
        self._base = (deployment.url or "").rstrip("/")

    def supports(self, endpoint: str) -> bool:
        return serves(self.deployment.engine, endpoint)

    async def start(self) -> None:
        timeouts = self.deployment.timeouts
        headers = {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=1000, ttl_dns_cache=300, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect, sock_read=timeouts.read),
            skip_auto_headers=("User-Agent",),
        )

    def begin_shutdown(self) -> None:
        pass  # nothing queues here: in-flight requests finish as the server drains

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def count_tokens(self, text: str) -> int | None:
        """Tokens in ``text`` by the deployment's own tokenizer, from engines that expose one
        (vLLM, llama-server, TGI); None from the others. Raises EngineFailure when it cannot ask."""
        how = TOKENIZERS.get(self.deployment.engine)
        if how is None:
            return None
        assert self._session is not None, "engine not started"
        request, read = how
        root = self._base.removesuffix("/v1")  # the tokenizer is served beside the OpenAI API, not in it
        try:
            async with self._session.post(f"{root}/tokenize", data=orjson.dumps(request(text, self.deployment.model)),
                                          headers={"content-type": "application/json"},
                                          timeout=aiohttp.ClientTimeout(total=self.deployment.timeouts.first_token,
                                                                        sock_connect=self.deployment.timeouts.connect)
                                          ) as response:
                if response.status != 200:
                    raise EngineFailure(f"http_{response.status}", "tokenizer")
                return int(read(orjson.loads(await response.read())))
        except (TimeoutError, aiohttp.ClientError):
            raise EngineFailure("connect", "tokenizer") from None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise EngineFailure("bad_response", "tokenizer") from None

    def __repr__(self) -> str:  # never show the credential
        return f"OpenAIUpstream({self.name!r}, {self.deployment.url!r})"

    async def call(self, endpoint: str, body: dict[str, Any], stream: bool, caller: str = "",
                   request_id: str = "") -> EngineReply:
        assert self._session is not None, "engine not started"
        body = dict(body, model=self.deployment.model)
        caller_wants_usage = False
        if stream:
            options = body.get("stream_options") or {}
            caller_wants_usage = bool(options.get("include_usage"))
            body["stream_options"] = {**options, "include_usage": True}
        first_token = self.deployment.timeouts.first_token
        headers = {"content-type": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        traceparent = UPSTREAM_TRACEPARENT.get()
        if traceparent:  # vLLM, TGI and SGLang join the gateway's trace
            headers["traceparent"] = traceparent
        try:
            response = await asyncio.wait_for(
                self._session.post(f"{self._base}/{endpoint}", data=orjson.dumps(body),
                                   headers=headers),
                first_token)
        except TimeoutError:
            raise EngineFailure("timeout", "no response before the first-token timeout") from None
        except aiohttp.ClientError as exc:
            raise EngineFailure("connect", type(exc).__name__) from None
        try:
            if response.status >= 400:
                content = await response.read()
                if response.status == 429:
                    raise EngineBusy("upstream rate limit", retry_after_seconds(response.headers.get("retry-after")))
                if response.status in (401, 403):
                    # Our credential towards the upstream failed: not the caller's fault, and the
                    # upstream's message may quote part of that credential, so it is not passed on.
                    log.error("deployment %s refused Gatehouse's credential (HTTP %d)", self.name, response.status)
                    raise EngineFailure("upstream_auth", f"HTTP {response.status}")
                if response.status >= 500 or response.status in FALLBACK_STATUSES:
                    raise EngineFailure(f"http_{response.status}")
                message, code, param = _error_message(content)
                raise UpstreamRejected(response.status, message, code, param)
            if not stream:
                try:
                    data = orjson.loads(await asyncio.wait_for(response.read(), first_token))
                except TimeoutError:
                    raise EngineFailure("timeout", "response body did not arrive in time") from None
                except aiohttp.ClientError as exc:
                    raise EngineFailure("connect", type(exc).__name__) from None
                except orjson.JSONDecodeError:
                    raise EngineFailure("bad_response", "upstream answered with invalid JSON") from None
                if not isinstance(data, dict):
                    raise EngineFailure("bad_response", "upstream answered with a non-object")
                response.release()
                reply = EngineReply(body=data)
                reply.usage.take(data.get("usage"))
                return reply
            return await self._start_stream(response, caller_wants_usage)
        except BaseException:
            response.close()
            raise

    async def _start_stream(self, response: aiohttp.ClientResponse, caller_wants_usage: bool) -> EngineReply:
        usage = Usage()
        chunks = response.content.iter_any().__aiter__()
        buffer = bytearray()

        async def next_events() -> list[bytes]:
            while True:
                buffer.extend(await chunks.__anext__())
                events = split_events(buffer)
                if events:
                    return events

        try:
            pending = await asyncio.wait_for(next_events(), self.deployment.timeouts.first_token)
        except StopAsyncIteration:
            raise EngineFailure("bad_response", "stream ended before its first event") from None
        except TimeoutError:
            raise EngineFailure("timeout", "no first token before the first-token timeout") from None
        except aiohttp.ClientConnectionError as exc:
            raise EngineFailure("connect", type(exc).__name__) from None
        except aiohttp.ClientError as exc:  # e.g. a body cut off before its first event
            raise EngineFailure("bad_response", type(exc).__name__) from None

        def account(event: bytes) -> bytes | None:
            if b'"usage"' not in event or b'"usage":null' in event.replace(b" ", b""):
                return event
            try:
                data = orjson.loads(event[event.index(b"{"):])
            except (ValueError, orjson.JSONDecodeError):
                return event
            usage.take(data.get("usage"))
            if caller_wants_usage:
                return event
            if not data.get("choices"):
                return None  # the usage-only chunk we asked for on the caller's behalf
            data.pop("usage", None)
            return b"data: " + orjson.dumps(data) + b"\n\n"

        async def relay() -> AsyncIterator[bytes]:
            finished = False
            try:
                for event in pending:
                    if (out := account(event)) is not None:
                        yield out
                while True:
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        raise EngineFailure("stream_interrupted", type(exc).__name__) from None
                    buffer.extend(chunk)
                    for event in split_events(buffer):
                        if (out := account(event)) is not None:
                            yield out
                if buffer.strip():
                    yield bytes(buffer) + b"\n\n"
                finished = True
            finally:
                if finished:
                    response.release()
                else:
                    response.close()  # an unfinished body cannot go back to the pool

        return EngineReply(stream=relay(), usage=usage)
