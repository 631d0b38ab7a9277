"""The embedded engine: llama.cpp in process (llama-cpp-python), one request at a time.

A simple first version: one context, generation on a worker thread, a bounded wait queue
(a full queue answers "busy", which the router treats like any failure and falls back
from, or turns into 429). Continuous batching replaces this in its own module.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from llama_cpp import LogitsProcessorList, StoppingCriteriaList

from gatehouse.engines.base import SSE_DONE, EngineBusy, EngineFailure, EngineReply, UpstreamRejected, Usage, sse_event
from gatehouse.engines.chat_template import MessageError, gemma_chat_tokens
from gatehouse.policy.schema import Deployment, EmbeddedSettings

DEFAULT_MAX_TOKENS = 512
_SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 64}


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, default in _SAMPLING_DEFAULTS.items():
        value = body.get(name)
        params[name] = default if value is None else value
    if params["top_k"] <= 0:
        params["top_k"] = 0
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) is not None:
            params[name] = float(body[name])
    if body.get("seed") is not None:
        params["seed"] = int(body["seed"])
    stop = body.get("stop")
    if stop:
        params["stop"] = [stop] if isinstance(stop, str) else list(stop)
    return params


class EmbeddedEngine:
    def __init__(self, name: str, deployment: Deployment, model_path: Path) -> None:
        self.name = name
        self.deployment = deployment
        self.settings = deployment.settings or EmbeddedSettings()
        self.model_path = model_path
        self._llama: Any = None
        self._lock = asyncio.Lock()
        self._waiting = 0

    def supports(self, endpoint: str) -> bool:
        return endpoint in ("chat/completions", "completions")

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        from llama_cpp import Llama

        self._llama = Llama(
            model_path=str(self.model_path),
            n_ctx=self.settings.context_size,
            n_batch=self.settings.batch_size,
            n_threads=self.settings.threads,
            verbose=False,
        )

    async def close(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            async with self._lock:
                llama.close()

    # -- request preparation ------------------------------------------------------------

    def _tokenize(self, text: str, special: bool) -> list[int]:
        return self._llama.tokenize(text.encode(), add_bos=False, special=special)

    def _prompt_tokens(self, endpoint: str, body: dict[str, Any]) -> list[int]:
        if endpoint == "chat/completions":
            try:
                return gemma_chat_tokens(body["messages"], self._tokenize, self._llama.token_bos())
            except MessageError as exc:
                raise UpstreamRejected(400, str(exc), "invalid_value", "messages") from None
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise UpstreamRejected(400, "this deployment takes one prompt per request", "invalid_value", "prompt")
            prompt = prompt[0]
        if isinstance(prompt, list):  # already tokens
            vocabulary = self._llama.n_vocab()
            if not all(0 <= token < vocabulary for token in prompt):
                raise UpstreamRejected(400, f"token ids must be from 0 to {vocabulary - 1}", "invalid_value", "prompt")
            return [self._llama.token_bos(), *prompt]
        return [self._llama.token_bos(), *self._tokenize(prompt, False)]

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

    # -- serving ----------------------------------------------------------------------------

    async def call(self, endpoint: str, body: dict[str, Any], stream: bool) -> EngineReply:
        if self._llama is None:
            raise EngineFailure("connect", "embedded engine is not loaded")
        if not self.supports(endpoint):
            raise EngineFailure("unsupported", f"embedded engine does not serve /v1/{endpoint}")
        if (body.get("n") or 1) != 1:
            raise UpstreamRejected(400, "this deployment supports n=1 only", "unsupported_value", "n")
        tokens = self._prompt_tokens(endpoint, body)
        max_tokens = self._budget(tokens, body)
        params = _sampling(body)
        if self._lock.locked() and self._waiting >= self.settings.max_waiting:
            raise EngineBusy(f"{self._waiting} requests already waiting")
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        chat = endpoint == "chat/completions"
        usage = Usage(prompt_tokens=len(tokens))
        if not stream:
            return await self._complete(tokens, max_tokens, params, chat, usage)
        # From here the stream owns the lock: it is released when the generation thread ends.
        stream_iter = self._stream(tokens, max_tokens, params, chat, usage, body)
        first = await stream_iter.__anext__()

        async def relay() -> AsyncIterator[bytes]:
            try:
                yield first
                async for event in stream_iter:
                    yield event
            finally:
                await stream_iter.aclose()

        return EngineReply(stream=relay(), usage=usage)

    async def _complete(self, tokens: list[int], max_tokens: int, params: dict[str, Any], chat: bool,
                        usage: Usage) -> EngineReply:
        """Generate the whole answer on a thread. The lock is released when the thread ends,
        not when the caller stops waiting: a caller that went away stops it at the next token."""
        cancelled = threading.Event()
        work = functools.partial(self._llama.create_completion, tokens, max_tokens=max_tokens,
                                 stopping_criteria=StoppingCriteriaList([lambda _ids, _logits: cancelled.is_set()]),
                                 **params)
        future = asyncio.get_running_loop().run_in_executor(None, work)
        future.add_done_callback(lambda _future: self._lock.release())
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        usage.completion_tokens = result["usage"]["completion_tokens"]
        return EngineReply(body=self._final_body(result, chat, usage), usage=usage)

    def _final_body(self, result: dict[str, Any], chat: bool, usage: Usage) -> dict[str, Any]:
        choice = result["choices"][0]
        usage_body = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                      "total_tokens": (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)}
        if chat:
            return {
                "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": self.deployment.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": choice["text"]},
                             "logprobs": None, "finish_reason": choice["finish_reason"]}],
                "usage": usage_body,
            }
        return {
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": self.deployment.model,
            "choices": [{"index": 0, "text": choice["text"], "logprobs": None, "finish_reason": choice["finish_reason"]}],
            "usage": usage_body,
        }

    async def _stream(self, tokens: list[int], max_tokens: int, params: dict[str, Any], chat: bool,
                      usage: Usage, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Run generation on a thread and turn its chunks into OpenAI SSE events.

        The engine lock is held until the generation thread ends; closing this generator
        (the caller went away) tells the thread to stop after the current token.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        sampled = [0]

        def count(_input_ids: Any, logits: Any) -> Any:
            sampled[0] += 1
            return logits

        def produce() -> None:
            try:
                for chunk in self._llama.create_completion(tokens, max_tokens=max_tokens, stream=True,
                                                           logits_processor=LogitsProcessorList([count]), **params):
                    if cancelled.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except Exception as exc:  # surfaced to the async side
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        model = self.deployment.model

        def event(choice: dict[str, Any], extra: dict[str, Any] | None = None) -> bytes:
            payload = {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                       "created": created, "model": model, "choices": [choice] if choice else []}
            if extra:
                payload.update(extra)
            return sse_event(orjson.dumps(payload))

        worker = loop.run_in_executor(None, produce)
        worker.add_done_callback(lambda _future: self._lock.release())
        try:
            if chat:
                yield event({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None})
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, Exception):
                    raise EngineFailure("engine_error", type(item).__name__)
                choice = item["choices"][0]
                text, reason = choice.get("text") or "", choice.get("finish_reason")
                if reason is not None:
                    usage.completion_tokens = max(0, sampled[0] - (1 if reason == "stop" else 0))
                if chat:
                    delta = {"content": text} if text else {}
                    if text or reason:
                        yield event({"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason})
                elif text or reason:
                    yield event({"index": 0, "text": text, "logprobs": None, "finish_reason": reason})
            if usage.completion_tokens is None:
                usage.completion_tokens = sampled[0]
            if (body.get("stream_options") or {}).get("include_usage"):
                yield event({}, {"usage": {
                    "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                    "total_tokens": (usage.prompt_tokens or 0) + usage.completion_tokens}})
            yield SSE_DONE
        finally:
            cancelled.set()  # a caller that went away frees the engine after the current token
