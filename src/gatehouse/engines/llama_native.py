"""Thin wrappers over llama-cpp-python's low-level API, for the batching scheduler.

Uses ``llama_cpp._internals`` (the classes llama-cpp-python's own ``Llama`` is built on);
the package is pinned to an exact version for that reason.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import llama_cpp
from llama_cpp._internals import LlamaBatch, LlamaContext, LlamaModel, LlamaSampler


@llama_cpp.llama_log_callback
def _discard_log(level: int, text: bytes | None, user_data: int | None) -> None:
    """Drop the line (the arguments are the C ones as ctypes converts them)."""


def silence_llama_logs() -> None:
    """llama.cpp prints hundreds of lines per context to stderr; Gatehouse logs its own."""
    llama_cpp.llama_log_set(_discard_log, ctypes.c_void_p(0))


def available_cpus() -> int:
    """CPUs this process may run on (llama.cpp's own default oversubscribes small machines)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class NativeModel:
    def __init__(self, path: str, threads: int | None = None) -> None:
        silence_llama_logs()
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        self.model = LlamaModel(path_model=path, params=params, verbose=False)
        self.vocab = self.model.vocab
        self.n_vocab = self.model.n_vocab()
        self.bos = self.model.token_bos()
        self._piece = ctypes.create_string_buffer(256)

    def tokenize(self, text: str, special: bool) -> list[int]:
        if not text:
            return []
        return self.model.tokenize(text.encode(), add_bos=False, special=special)

    def piece(self, token: int) -> bytes:
        """The bytes of one token as generated text (special tokens render as nothing)."""
        size = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:size] if size > 0 else b""

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def close(self) -> None:
        self.model.close()


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 64
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()


def make_sampler(params: SamplingParams, n_vocab: int, default_seed: int) -> LlamaSampler:
    """One sampler chain per sequence: its own penalties history and its own RNG."""
    sampler = LlamaSampler()
    if params.presence_penalty or params.frequency_penalty:
        sampler.add_penalties(n_vocab, 64, 1.0, params.frequency_penalty, params.presence_penalty)
    if params.temperature <= 0:
        sampler.add_greedy()
        return sampler
    if params.top_k > 0:
        sampler.add_top_k(params.top_k)
    if params.top_p < 1.0:
        sampler.add_top_p(params.top_p, 1)
    sampler.add_temp(params.temperature)
    seed = params.seed if params.seed is not None else default_seed
    sampler.add_dist(seed & 0xFFFFFFFF)
    return sampler


class BatchContext:
    """One llama.cpp context with a KV stream per sequence slot.

    Streams are kept apart (``kv_unified=False``) so that a sequence's attention never
    depends on what other sequences hold, and the sliding-window layers keep a full cache
    (``swa_full``) so cached prefixes stay usable.
    """

    def __init__(self, model: NativeModel, slots: int, context_per_slot: int, batch_size: int,
                 threads: int | None) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = slots * context_per_slot
        params.n_batch = batch_size
        params.n_ubatch = batch_size
        params.n_seq_max = slots
        params.n_threads = params.n_threads_batch = threads or available_cpus()
        params.kv_unified = False
        params.swa_full = True
        params.no_perf = True
        self.context = LlamaContext(model=model.model, params=params, verbose=False)
        self.ctx = self.context.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = LlamaBatch(n_tokens=batch_size, embd=0, n_seq_max=1, verbose=False)
        self.capacity = batch_size

    def clear_batch(self) -> None:
        self.batch.batch.n_tokens = 0

    def add(self, token: int, position: int, seq: int, wants_logits: bool) -> int:
        raw = self.batch.batch
        index = raw.n_tokens
        raw.token[index] = token
        raw.pos[index] = position
        raw.n_seq_id[index] = 1
        raw.seq_id[index][0] = seq
        raw.logits[index] = wants_logits
        raw.n_tokens = index + 1
        return index

    @property
    def batch_tokens(self) -> int:
        return self.batch.batch.n_tokens

    def decode(self) -> None:
        status = llama_cpp.llama_decode(self.ctx, self.batch.batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")

    def forget(self, seq: int, from_position: int = 0) -> None:
        """Drop a sequence's cache from ``from_position`` on."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq, from_position, -1)

    def copy_sequence(self, source: int, target: int) -> None:
        """Copy a whole sequence's cache to another slot (separate streams copy whole)."""
        llama_cpp.llama_memory_seq_rm(self.memory, target, -1, -1)
        llama_cpp.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def sample(self, sampler: LlamaSampler, index: int) -> int:
        return llama_cpp.llama_sampler_sample(sampler.sampler, self.ctx, index)

    def close(self) -> None:
        self.batch.close()
        self.context.close()
