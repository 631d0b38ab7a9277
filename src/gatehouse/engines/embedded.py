"""The embedded engine: llama.cpp in process, with continuous batching.

The HTTP side of the engine: it checks and tokenises a request, hands it to the
:class:`~gatehouse.engines.scheduler.Scheduler` (which owns the model on its own thread),
and turns the scheduler's events into OpenAI responses or SSE streams.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import orjson

from gatehouse.core.sse import SSE_DONE, sse_event
from gatehouse.engines.base import EngineBusy, EngineFailure, EngineReply, UpstreamRejected, Usage
from gatehouse.engines.chat_template import MessageError, gemma_chat_tokens
from gatehouse.engines.llama_native import NativeModel, SamplingParams
from gatehouse.engines.scheduler import Failed, Finished, Generation, QueueFull, Scheduler, ShuttingDown, Token
from gatehouse.engines.serving import serves
from gatehouse.engines.spec import Deployment, EmbeddedSettings
from gatehouse.telemetry.engine_metrics import EngineMetrics

DEFAULT_MAX_TOKENS = 512
SHUTDOWN_DRAIN_SECONDS = 20.0


def sampling_params(body: dict[str, Any]) -> SamplingParams:
    stop = body.get("stop")
    return SamplingParams(
        temperature=float(body["temperature"]) if body.get("temperature") is not None else 1.0,
        top_p=float(body["top_p"]) if body.get("top_p") is not None else 1.0,
        top_k=int(body["top_k"]) if body.get("top_k") is not None else 64,
        seed=int(body["seed"]) if body.get("seed") is not None else None,
        presence_penalty=float(body.get("presence_penalty") or 0.0),
        frequency_penalty=float(body.get("frequency_penalty") or 0.0),
        stop=tuple([stop] if isinstance(stop, str) else (stop or ())),
    )


def _put_all(events: list[tuple[Generation, Any]]) -> None:
    for generation, event in events:
        generation.sink.put_nowait(event)


class EmbeddedEngine:
    def __init__(self, name: str, deployment: Deployment, model_path: Path) -> None:
        self.name = name
        self.deployment = deployment
        self.settings = deployment.settings or EmbeddedSettings()
        self.model_path = model_path
        self.model: NativeModel | None = None
        self.scheduler: Scheduler | None = None
        self.metrics = EngineMetrics(name)
        self._loop: asyncio.AbstractEventLoop | None = None

    def supports(self, endpoint: str) -> bool:
        return serves("embedded", endpoint)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._load)

    def _deliver(self, events: list[tuple[Generation, Any]]) -> None:
        """Called on the scheduler thread with one step's events."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_put_all, events)

    def _load(self) -> None:
        settings = self.settings
        self.model = NativeModel(str(self.model_path))
        self.scheduler = Scheduler(
            self.model, slots=settings.slots, context_size=settings.context_size,
            batch_size=settings.batch_size, threads=settings.threads, max_waiting=settings.max_waiting,
            prefill_chunk=settings.prefill_chunk, deliver=self._deliver, observer=self.metrics.observe,
        )
        self.metrics.bind(self.scheduler)

    def begin_shutdown(self) -> None:
        """The server is going down: queued requests get their answer (503) now, not at the end."""
        if self.scheduler is not None:
            self.scheduler.begin_drain()

    async def close(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            await asyncio.to_thread(scheduler.stop, SHUTDOWN_DRAIN_SECONDS)
        if self.model is not None:
            self.model.close()
            self.model = None

    async def count_tokens(self, text: str) -> int | None:
        """Tokens in ``text`` by this model's tokenizer (reads the vocabulary only: safe beside decoding)."""
        model = self.model
        if model is None:
            raise EngineFailure("shutting_down", "engine closed")
        if len(text) > 4096:  # long texts off the event loop
            return len(await asyncio.to_thread(model.tokenize, text, False))
        return len(model.tokenize(text, False))

    # -- request preparation ----------------------------------------------------------------

    @staticmethod
    def _prompt_tokens(model: NativeModel, endpoint: str, body: dict[str, Any]) -> list[int]:
        if endpoint == "chat/completions":
            try:
                return gemma_chat_tokens(body["messages"], model.tokenize, model.bos)
            except MessageError as exc:
                raise UpstreamRejected(400, str(exc), "invalid_value", "messages") from None
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise UpstreamRejected(400, "this deployment takes one prompt per request", "invalid_value", "prompt")
            prompt = prompt[0]
        if isinstance(prompt, list):  # already tokens
            if not all(0 <= token < model.n_vocab for token in prompt):
                raise UpstreamRejected(400, f"token ids must be from 0 to {model.n_vocab - 1}", "invalid_value", "prompt")
            return [model.bos, *prompt]
        # what is left is a string: the gateway's request validation admits no other prompt
        return [model.bos, *model.tokenize(cast(str, prompt), False)]

    def _budget(self, prompt_tokens: list[int], body: dict[str, Any]) -> int:
        context = self.settings.context_size
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        room = context - len(prompt_tokens)
        if requested is None:
            if room < 1:
                raise UpstreamRejected(
                    400, f"the prompt is {len(prompt_tokens)} tokens; this model's context is {context} tokens",
                    "context_length_exceeded", "messages")
            return min(DEFAULT_MAX_TOKENS, room)
        if len(prompt_tokens) + requested > context:
            raise UpstreamRejected(
                400,
                f"this model's context is {context} tokens; the prompt is {len(prompt_tokens)} tokens "
                f"and max_tokens asks for {requested} more",
                "context_length_exceeded", "max_tokens")
        return int(requested)

    # -- serving ------------------------------------------------------------------------------

    async def call(self, endpoint: str, body: dict[str, Any], stream: bool, caller: str = "",
                   request_id: str = "") -> EngineReply:
        scheduler, model = self.scheduler, self.model
        if scheduler is None or model is None:
            raise EngineFailure("connect", "embedded engine is not running")
        if not self.supports(endpoint):
            raise EngineFailure("unsupported", f"embedded engine does not serve /v1/{endpoint}")
        if (body.get("n") or 1) != 1:
            raise UpstreamRejected(400, "this deployment supports n=1 only", "unsupported_value", "n")
        tokens = self._prompt_tokens(model, endpoint, body)
        max_tokens = self._budget(tokens, body)
        events: asyncio.Queue[Any] = asyncio.Queue()
        generation = Generation(tokens, max_tokens, sampling_params(body), caller, events)
        try:
            scheduler.submit(generation)
        except QueueFull:
            raise EngineBusy(f"{scheduler.waiting} requests already waiting") from None
        except ShuttingDown:
            raise EngineFailure("connect", "embedded engine is shutting down") from None
        first = await self._next(events, generation, started=False)
        chat = endpoint == "chat/completions"
        usage = Usage(prompt_tokens=len(tokens))
        if stream:
            return EngineReply(stream=self._stream(first, events, generation, chat, usage, body), usage=usage)
        return await self._collect(first, events, generation, chat, usage)

    async def _next(self, events: asyncio.Queue[Any], generation: Generation, started: bool = True) -> Any:
        """The next event; a caller that stops waiting cancels the generation."""
        try:
            event = await events.get()
        except asyncio.CancelledError:
            generation.cancelled.set()
            raise
        if isinstance(event, Failed):
            generation.cancelled.set()
            kind = "stream_interrupted" if started and event.kind != "shutting_down" else event.kind
            raise EngineFailure(kind, event.message)
        return event

    async def _collect(self, event: Any, events: asyncio.Queue[Any], generation: Generation, chat: bool,
                       usage: Usage) -> EngineReply:
        parts = []
        while isinstance(event, Token):
            parts.append(event.text)
            event = await self._next(events, generation)
        assert isinstance(event, Finished)
        usage.completion_tokens = event.completion_tokens
        text, reason = "".join(parts), event.reason
        usage_body = self._usage_body(event)
        created, model = int(time.time()), self.deployment.model
        if chat:
            body = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": created,
                    "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                 "logprobs": None, "finish_reason": reason}], "usage": usage_body}
        else:
            body = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": created, "model": model,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": reason}],
                    "usage": usage_body}
        return EngineReply(body=body, usage=usage)

    @staticmethod
    def _usage_body(event: Finished) -> dict[str, Any]:
        return {"prompt_tokens": event.prompt_tokens, "completion_tokens": event.completion_tokens,
                "total_tokens": event.prompt_tokens + event.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": event.cached_tokens}}

    async def _stream(self, event: Any, events: asyncio.Queue[Any], generation: Generation, chat: bool,
                      usage: Usage, body: dict[str, Any]) -> AsyncIterator[bytes]:
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created, model = int(time.time()), self.deployment.model
        head = {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                "created": created, "model": model}

        def chunk(text: str | None, reason: str | None = None, role: bool = False) -> bytes:
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else (
                    {"content": text} if text else {})
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            else:
                choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": reason}
            return sse_event(orjson.dumps({**head, "choices": [choice]}))

        try:
            if chat:
                yield chunk(None, role=True)
            while isinstance(event, Token):
                yield chunk(event.text)
                event = await self._next(events, generation)
            assert isinstance(event, Finished)
            usage.completion_tokens = event.completion_tokens
            yield chunk(None, event.reason)
            if (body.get("stream_options") or {}).get("include_usage"):
                yield sse_event(orjson.dumps({**head, "choices": [], "usage": self._usage_body(event)}))
            yield SSE_DONE
        finally:
            generation.cancelled.set()  # no-op when finished; frees the slot when the caller left
            if usage.completion_tokens is None:
                usage.completion_tokens = generation.completion_tokens
