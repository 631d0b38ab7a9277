"""The Engine protocol.

An engine knows nothing about keys, policy or HTTP routes: it takes an OpenAI-shaped
request body for one endpoint and answers with a JSON body or a stream of SSE events.
``call`` returns only once the engine has committed to an answer (for a stream: once its
first event is in hand), so the router can still fall back before the caller sees a byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

ENDPOINTS = ("chat/completions", "completions", "embeddings")


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def take(self, usage: Any) -> None:
        """An upstream's ``usage`` object; a count that is not a plausible token count (not an
        int, negative, a bool, past 2**31) is the upstream's error and is not believed."""
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if token_count(prompt):
                self.prompt_tokens = prompt
            if token_count(completion):
                self.completion_tokens = completion


MAX_TOKENS = 2**31 - 1  # what the store's integer columns hold


def token_count(value: Any) -> bool:
    """Whether an engine's figure is a token count Gatehouse can believe and store."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS


@dataclass
class EngineReply:
    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None  # complete SSE events, b"data: ...\n\n"
    usage: Usage = field(default_factory=Usage)


class EngineFailure(Exception):
    """The deployment could not answer; the router may try the next one.

    ``kind`` is one of: connect, timeout, http_<status>, bad_response, unsupported, credential
    (its credential is missing or invalid), bad_token_count (a tokenizer answered nonsense).
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


class EngineBusy(EngineFailure):
    """The deployment is at capacity (its queue is full)."""

    def __init__(self, detail: str = "queue full", retry_after: int = 1) -> None:
        super().__init__("busy", detail)
        self.retry_after = retry_after


class UpstreamRejected(Exception):
    """The deployment refused the request itself (a 4xx other than 408/429): no fallback."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.deployment: str | None = None  # set by the router: who rejected it …
        self.attempts: list[Any] = []  # … and the deployments that failed before it
        super().__init__(message)


class Engine(Protocol):
    name: str

    def supports(self, endpoint: str) -> bool: ...

    async def start(self) -> None: ...

    def begin_shutdown(self) -> None:
        """Called from a signal handler as the server starts draining; must be thread-safe."""
        ...

    async def close(self) -> None: ...

    async def call(self, endpoint: str, body: dict[str, Any], stream: bool, caller: str = "",
                   request_id: str = "") -> EngineReply:
        """``caller`` names who is asking (the identity), for engines that share fairly;
        ``request_id`` is Gatehouse's id of the request, passed on for correlation."""
        ...

    async def count_tokens(self, text: str) -> int | None:
        """Tokens in ``text`` by the deployment's own tokenizer; None if it cannot tell."""
        ...
