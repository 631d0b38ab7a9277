"""Continuous batching for the embedded engine.

One thread owns one llama.cpp context with ``slots`` sequences. Every step it builds one
batch: a token for each sequence that is decoding, then a bounded chunk of prompt tokens for
sequences still reading their prompt (so a long prompt never stalls everyone's decoding),
decodes it once, samples every sequence that needs a token, and hands text to the callers.
New requests join at the next step; finished ones leave.

Prefix cache: a slot keeps the tokens it last held. A new request goes to the free slot that
shares the longest prefix with its prompt, or copies the cache of a busy slot that shares a
longer one, and only the rest of the prompt is computed.

Admission: a bounded waiting queue, served round-robin across callers, so one identity
flooding the engine cannot starve another.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gatehouse.engines.llama_native import BatchContext, NativeModel, SamplingParams, make_sampler
from gatehouse.engines.text_stream import TextStream

log = logging.getLogger("gatehouse.engine")
MIN_COPY_GAIN = 16  # tokens a copy from a busy slot must save to be worth a whole-stream copy


@dataclass(frozen=True)
class Token:
    text: str


@dataclass(frozen=True)
class Finished:
    reason: str  # stop | length | cancelled
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


@dataclass(frozen=True)
class Failed:
    kind: str
    message: str


Event = Token | Finished | Failed


class QueueFull(Exception):
    pass


class ShuttingDown(Exception):
    pass


@dataclass(eq=False)
class Generation:
    prompt: list[int]
    max_tokens: int
    sampling: SamplingParams
    caller: str
    sink: Any  # where the engine wants this generation's events; the scheduler only passes it on
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued_at: float = field(default_factory=time.monotonic)
    cached_tokens: int = 0
    completion_tokens: int = 0
    last_token_at: float | None = None


@dataclass(eq=False)
class Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV this sequence holds
    generation: Generation | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens still to read
    next_token: int | None = None  # sampled, not yet fed back
    sampler: Any = None
    text: TextStream | None = None
    feeding: list[int] = field(default_factory=list)
    logits_index: int | None = None
    last_used: float = 0.0

    @property
    def decoding(self) -> bool:
        return self.generation is not None and not self.pending and self.next_token is not None

    def release(self) -> None:
        """Free the slot for the next request; ``cached`` stays as the prefix cache."""
        self.generation, self.sampler, self.text, self.next_token = None, None, None, None
        self.pending, self.feeding, self.logits_index = [], [], None
        self.last_used = time.monotonic()


def common_prefix(a: list[int], b: list[int]) -> int:
    size = min(len(a), len(b))
    for index in range(size):
        if a[index] != b[index]:
            return index
    return size


def _enqueued_at(slot: Slot) -> float:
    """The order prompts are read in: the oldest request first. Asked of busy slots only."""
    assert slot.generation is not None
    return slot.generation.enqueued_at


class Scheduler:
    def __init__(self, model: NativeModel, *, slots: int, context_size: int, batch_size: int,
                 threads: int | None, max_waiting: int, prefill_chunk: int,
                 deliver: Callable[[list[tuple[Generation, Event]]], None],
                 observer: Callable[[str, float], None] | None = None) -> None:
        self.model = model
        self.context_size = context_size
        self.max_waiting = max_waiting
        self.prefill_chunk = max(1, min(prefill_chunk, batch_size))
        self.ctx = BatchContext(model, slots, context_size, batch_size, threads)
        self.slots = [Slot(seq) for seq in range(slots)]
        self._observe = observer or (lambda name, value: None)
        self._deliver = deliver
        self._outbox: list[tuple[Generation, Event]] = []
        self._waiting: OrderedDict[str, deque[Generation]] = OrderedDict()
        self._n_waiting = 0
        self._lock = threading.Condition()
        self._accepting = True
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="gatehouse-scheduler", daemon=True)
        self._thread.start()

    # -- called from other threads ----------------------------------------------------------

    def submit(self, generation: Generation) -> None:
        with self._lock:
            if not self._accepting:
                raise ShuttingDown()
            free = sum(1 for slot in self.slots if slot.generation is None)
            if self._n_waiting >= self.max_waiting + free:
                self._prune_cancelled()
                if self._n_waiting >= self.max_waiting + free:
                    raise QueueFull()
            self._waiting.setdefault(generation.caller, deque()).append(generation)
            self._n_waiting += 1
            self._lock.notify()

    @property
    def running(self) -> int:
        return sum(1 for slot in self.slots if slot.generation is not None)

    @property
    def waiting(self) -> int:
        return self._n_waiting

    def kv_usage(self) -> float:
        used = sum(len(slot.cached) + len(slot.pending) for slot in self.slots)
        return used / (self.context_size * len(self.slots))

    def begin_drain(self) -> None:
        """Refuse new work and fail what waits; running generations carry on. Thread-safe."""
        with self._lock:
            self._accepting = False
            waiting = [g for queue in self._waiting.values() for g in queue]
            self._waiting.clear()
            self._n_waiting = 0
            self._lock.notify()
        if waiting:
            self._deliver([(g, Failed("shutting_down", "the engine is shutting down")) for g in waiting])

    def stop(self, drain_timeout: float) -> None:
        """Drain (see :meth:`begin_drain`), let running generations finish (bounded), stop."""
        self.begin_drain()
        deadline = time.monotonic() + drain_timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join(timeout=30)
        if not self._thread.is_alive():  # never free the context under a running decode
            self.ctx.close()

    # -- the scheduler thread ---------------------------------------------------------------

    def _prune_cancelled(self) -> None:
        """Forget queued requests whose callers already left (they no longer count as waiting)."""
        for caller in list(self._waiting):
            queue = self._waiting[caller]
            live = deque(g for g in queue if not g.cancelled.is_set())
            self._n_waiting -= len(queue) - len(live)
            if live:
                self._waiting[caller] = live
            else:
                del self._waiting[caller]

    def _next_waiting(self) -> Generation | None:
        """Round-robin across callers; drops requests whose caller already left."""
        while self._waiting:
            caller, queue = next(iter(self._waiting.items()))
            generation = queue.popleft()
            self._n_waiting -= 1
            if queue:
                self._waiting.move_to_end(caller)
            else:
                del self._waiting[caller]
            if not generation.cancelled.is_set():
                return generation
        return None

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and self._n_waiting == 0 and self.running == 0:
                    self._lock.wait()
                if self._stopping:
                    break
                self._admit()
            try:
                self._step()
            except Exception as exc:  # a failed decode must not take the engine down
                log.error("embedded engine step failed: %s", exc)
                self._fail_active("engine_error", str(exc))
            self._flush()
        self._fail_active("shutting_down", "the engine stopped before this generation finished")
        self._flush()

    def _emit(self, generation: Generation, event: Event) -> None:
        self._outbox.append((generation, event))

    def _flush(self) -> None:
        """Hand a whole step's events over at once: one wake-up of the caller's loop per step."""
        if self._outbox:
            outbox, self._outbox = self._outbox, []
            self._deliver(outbox)

    def _admit(self) -> None:
        for slot in self.slots:
            if slot.generation is None and self._n_waiting:
                generation = self._next_waiting()
                if generation is None:
                    return
                self._assign(generation)

    def _assign(self, generation: Generation) -> None:
        prompt = generation.prompt
        free = [slot for slot in self.slots if slot.generation is None]
        best_free = max(free, key=lambda s: (common_prefix(s.cached, prompt), -s.last_used))
        reuse = common_prefix(best_free.cached, prompt)
        target = best_free
        busy = [slot for slot in self.slots if slot.generation is not None]
        donor = max(busy, key=lambda s: common_prefix(s.cached, prompt), default=None)
        if donor is not None:
            donor_reuse = common_prefix(donor.cached, prompt)
            if donor_reuse >= reuse + MIN_COPY_GAIN:
                if reuse == 0:  # do not evict another warm cache when a cold slot will do
                    target = min(free, key=lambda s: (len(s.cached) > 0, s.last_used))
                self.ctx.copy_sequence(donor.seq, target.seq)
                target.cached = list(donor.cached)
                reuse = donor_reuse
        keep = min(reuse, len(prompt) - 1)  # the last prompt token is read again for its logits
        self.ctx.forget(target.seq, keep)
        target.cached = prompt[:keep]
        target.pending = prompt[keep:]
        target.next_token = None
        target.generation = generation
        # without a seed, every request draws its own randomness
        target.sampler = make_sampler(generation.sampling, self.model.n_vocab, secrets.randbits(32))
        target.text = TextStream(generation.sampling.stop)
        generation.cached_tokens = keep
        self._observe("prefix_hit_tokens", keep)
        self._observe("queue_seconds", time.monotonic() - generation.enqueued_at)

    def _step(self) -> None:
        for slot in self.slots:
            if slot.generation is not None and slot.generation.cancelled.is_set():
                self._finish(slot, "cancelled")
        ctx = self.ctx
        ctx.clear_batch()
        budget = ctx.capacity
        decoding = [slot for slot in self.slots if slot.decoding]
        for slot in decoding:
            token = slot.next_token
            assert token is not None  # that is what ``decoding`` means: a sampled token to feed back
            slot.logits_index = ctx.add(token, len(slot.cached), slot.seq, True)
            slot.feeding = [token]
            budget -= 1
        prefill_budget = min(budget, self.prefill_chunk) if decoding else budget
        reading = sorted((s for s in self.slots if s.generation is not None and s.pending), key=_enqueued_at)
        for slot in reading:
            if prefill_budget <= 0:
                break
            take = slot.pending[:prefill_budget]
            base = len(slot.cached)
            last = len(take) == len(slot.pending)
            for offset, token in enumerate(take):
                index = ctx.add(token, base + offset, slot.seq, last and offset == len(take) - 1)
            slot.logits_index = index if last else None
            slot.feeding = take
            prefill_budget -= len(take)
        if ctx.batch_tokens == 0:
            return
        ctx.decode()
        now = time.monotonic()
        for slot in self.slots:
            if slot.feeding:
                slot.cached.extend(slot.feeding)
                if slot.pending:
                    slot.pending = slot.pending[len(slot.feeding):]
                else:
                    slot.next_token = None
                slot.feeding = []
        for slot in self.slots:
            if slot.logits_index is None or slot.generation is None:
                continue
            token = ctx.sample(slot.sampler, slot.logits_index)
            slot.logits_index = None
            self._take(slot, token, now)

    def _take(self, slot: Slot, token: int, now: float) -> None:
        generation = slot.generation
        assert generation is not None and slot.text is not None
        if generation.last_token_at is None:
            self._observe("ttft_seconds", now - generation.enqueued_at)
        else:
            self._observe("itl_seconds", now - generation.last_token_at)
        generation.last_token_at = now
        if self.model.is_end_of_generation(token):
            self._finish(slot, "stop")
            return
        generation.completion_tokens += 1
        self._observe("generated_tokens", 1)
        text = slot.text.feed(self.model.piece(token))
        if text:
            self._emit(generation, Token(text))
        if slot.text.stopped:
            self._finish(slot, "stop")
        elif generation.completion_tokens >= generation.max_tokens:
            self._finish(slot, "length")
        else:
            slot.next_token = token

    def _finish(self, slot: Slot, reason: str) -> None:
        generation = slot.generation
        assert generation is not None
        if slot.text is not None and reason != "cancelled":
            rest = slot.text.finish()
            if rest:
                self._emit(generation, Token(rest))
        self._emit(generation, Finished(reason, len(generation.prompt), generation.completion_tokens,
                                     generation.cached_tokens))
        slot.release()  # stopped while reading the prompt: what was read stays cached

    def _fail_active(self, kind: str, message: str) -> None:
        for slot in self.slots:
            if slot.generation is not None:
                self._emit(slot.generation, Failed(kind, message))
                slot.release()
            self.ctx.forget(slot.seq, 0)
            slot.cached = []
