"""``gatehouse bench engine``: the embedded engine under closed-loop load.

Measures, for each concurrency level, aggregate output tokens/s, time to first token and
inter-token latency of:

- Gatehouse (a real ``gatehouse serve`` with the embedded engine, over HTTP),
- llama-cpp-python's own ``llama_cpp.server`` on the same model and prompts (optional),
- a tight raw batched-decode loop with as many sequences as the level's concurrency: the
  ceiling for this model on this CPU,

and the prefix cache's effect on time to first token with a shared ~1,000-token system
prompt. Everything runs on this machine, one system at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from gatehouse.bench.stats import percentile, ratio
from gatehouse.engines.llama_native import available_cpus
from gatehouse.identity import service
from gatehouse.identity.bootstrap import bootstrap
from gatehouse.store.db import Database

PROMPTS = [
    "1, 2, 3, 4, 5, 6, 7, 8,",
    "The history of the city of Rome is",
    "Monday, Tuesday, Wednesday,",
    "Once upon a time, in a small village by the sea,",
    "The main causes of the industrial revolution were",
    "A, B, C, D, E, F,",
    "In computer science, a hash table is",
    "The recipe needs flour, sugar, eggs,",
]
SYSTEM_PROMPT = ("You are the support assistant of a large hardware store. Answer briefly and politely. "
                 "Never promise delivery dates. Refer warranty questions to the service desk. ") * 33


@dataclass
class RequestTiming:
    ttft: float
    itls: list[float]
    tokens: int
    duration: float


@dataclass
class LevelResult:
    system: str
    concurrency: int
    requests: int
    tokens: int
    seconds: float
    tokens_per_second: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    errors: int = 0
    # while every worker still had requests to send (no tail of a half-empty batch)
    steady_tokens_per_second: float | None = None


@dataclass
class PrefixResult:
    prompt_tokens: int
    cold_ttft_ms: float
    warm_ttft_ms: list[float] = field(default_factory=list)
    cached_tokens: list[int] = field(default_factory=list)

    @property
    def warm_ttft_p50_ms(self) -> float | None:
        return percentile(self.warm_ttft_ms, 50)

    @property
    def speedup(self) -> float | None:
        return ratio(self.cold_ttft_ms, self.warm_ttft_p50_ms)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not start")


async def stream_one(client: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any],
                     arrivals: list[float] | None = None) -> RequestTiming:
    started = time.perf_counter()
    first: float | None = None
    last = started
    itls: list[float] = []
    tokens = 0
    async with client.stream("POST", url, json=body, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = orjson.loads(line[6:])
            choices = data.get("choices") or []
            if choices and (choices[0].get("text") or (choices[0].get("delta") or {}).get("content")):
                now = time.perf_counter()
                if arrivals is not None:
                    arrivals.append(now)
                if first is None:
                    first = now
                else:
                    itls.append(now - last)
                last = now
                tokens += 1
            usage = data.get("usage")
            if usage:
                tokens = usage["completion_tokens"]
    end = time.perf_counter()
    return RequestTiming(ttft=(first or end) - started, itls=itls, tokens=tokens, duration=end - started)


async def closed_loop(system: str, base_url: str, key: str, model: str, concurrency: int, requests: int,
                      max_tokens: int) -> LevelResult:
    url = f"{base_url}/v1/completions"
    headers = {"authorization": f"Bearer {key}"}
    timings: list[RequestTiming] = []
    arrivals: list[float] = []
    errors = 0
    counter = iter(range(requests))
    drained_at: list[float] = []  # when the first worker found no more work: load falls off after it

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for index in counter:
            body = {"model": model, "prompt": PROMPTS[index % len(PROMPTS)], "max_tokens": max_tokens,
                    "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
            try:
                timings.append(await stream_one(client, url, headers, body, arrivals))
            except (httpx.HTTPError, RuntimeError):
                errors += 1
        drained_at.append(time.perf_counter())

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    tokens = sum(t.tokens for t in timings)
    ttfts = [t.ttft * 1000 for t in timings]
    itls = [i * 1000 for t in timings for i in t.itls]
    steady_end = min(drained_at) if drained_at else started + seconds
    steady = sum(1 for moment in arrivals if moment <= steady_end) / max(steady_end - started, 1e-9)
    return LevelResult(system, concurrency, len(timings), tokens, seconds, tokens / seconds if seconds else 0.0,
                       percentile(ttfts, 50), percentile(ttfts, 99), percentile(itls, 50), percentile(itls, 99), errors,
                       steady_tokens_per_second=steady)


def raw_decode_ceiling(model_path: str, sequences: int, steps: int, threads: int | None) -> LevelResult:
    """Prefill the prompts, then decode ``steps`` tokens for all sequences in one batch each step."""
    from gatehouse.engines.llama_native import (  # lazy: loads llama.cpp's shared library
        BatchContext,
        NativeModel,
        SamplingParams,
        make_sampler,
    )

    model = NativeModel(model_path)
    context = BatchContext(model, sequences, 512, 512, threads)
    try:
        prompts = [[model.bos, *model.tokenize(PROMPTS[s % len(PROMPTS)], False)] for s in range(sequences)]
        samplers = [make_sampler(SamplingParams(temperature=0), model.n_vocab, 0) for _ in range(sequences)]
        context.clear_batch()
        logits_at = []
        for seq, prompt in enumerate(prompts):
            for position, token in enumerate(prompt):
                index = context.add(token, position, seq, position == len(prompt) - 1)
            logits_at.append(index)
        context.decode()
        positions = [len(p) for p in prompts]
        started = time.perf_counter()
        for _ in range(steps):
            tokens = [context.sample(samplers[s], logits_at[s]) for s in range(sequences)]
            context.clear_batch()
            for seq, token in enumerate(tokens):
                logits_at[seq] = context.add(token, positions[seq], seq, True)
                positions[seq] += 1
            context.decode()
        seconds = time.perf_counter() - started
    finally:
        context.close()
        model.close()
    total = sequences * steps
    return LevelResult("raw-decode", sequences, sequences, total, seconds, total / seconds, None, None,
                       seconds / steps * 1000, None, steady_tokens_per_second=total / seconds)


@contextlib.contextmanager
def gatehouse_server(model_path: str, slots: int, threads: int) -> Iterator[tuple[str, str]]:
    """A throwaway ``gatehouse serve`` with the embedded engine; yields (base URL, key)."""
    from datetime import timedelta

    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-") as home:
        Path(home, "policy.yaml").write_text(textwrap.dedent(f"""\
            version: 1
            deployments:
              embedded:
                engine: embedded
                model: bench
                model_path: {model_path}
                settings: {{slots: {slots}, context_size: 2048, max_waiting: 256, threads: {threads}}}
            aliases:
              bench: {{route: [embedded]}}
            grants:
              - {{name: bench, subjects: [{{environment: dev}}], aliases: [bench]}}
            """))
        env = {**os.environ, "GATEHOUSE_HOME": home, "GATEHOUSE_PEPPER": "bench"}
        env.pop("GATEHOUSE_DATABASE_URL", None)
        env.pop("GATEHOUSE_POLICY", None)
        db = Database(f"sqlite:///{home}/gatehouse.db")
        db.upgrade()
        bootstrap(db, "local:bench", "bench-admin@example.com", pepper=b"bench", ttl=timedelta(hours=2))
        admin = "person:bench-admin@example.com"
        service.add_person(db, admin, "bench@example.com")
        service.create_identity(db, admin, "bench", "bench@example.com")
        _, key = service.issue_key(db, admin, "bench", pepper=b"bench", ttl=timedelta(hours=2),
                                   max_ttl=timedelta(days=1))
        db.dispose()
        port = free_port()
        log = open(Path(home, "serve.log"), "wb")
        process = subprocess.Popen([sys.executable, "-m", "gatehouse.cli.main", "serve", "--port", str(port),
                                    "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_for(f"http://127.0.0.1:{port}/healthz", process)
            except RuntimeError as exc:
                log.flush()
                tail = Path(home, "serve.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"gatehouse serve did not start: {exc}\n{tail}") from None
            yield f"http://127.0.0.1:{port}", key
        finally:
            process.terminate()
            process.wait(60)
            log.close()


@contextlib.contextmanager
def llama_cpp_server(model_path: str, threads: int) -> Iterator[str]:
    port = free_port()
    # --interrupt_requests False: queue concurrent requests instead of cutting the running one off
    args = [sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--port", str(port),
            "--n_ctx", "2048", "--verbose", "False", "--interrupt_requests", "False",
            "--n_threads", str(threads), "--n_threads_batch", str(threads)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/models", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(60)


async def prefix_effect(base_url: str, key: str, model: str, warm_requests: int) -> PrefixResult:
    url = f"{base_url}/v1/chat/completions"
    headers = {"authorization": f"Bearer {key}"}
    results: list[tuple[float, int, int]] = []
    async with httpx.AsyncClient(timeout=600) as client:
        for index in range(warm_requests + 1):
            body = {"model": model, "max_tokens": 8, "temperature": 0, "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                 {"role": "user", "content": f"Question {index}: do you sell ladders?"}]}
            started = time.perf_counter()
            first: float | None = None
            usage: dict[str, Any] = {}
            async with client.stream("POST", url, json=body, headers=headers) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    data = orjson.loads(line[6:])
                    choices = data.get("choices") or []
                    if first is None and choices and (choices[0].get("delta") or {}).get("content"):
                        first = time.perf_counter()
                    usage = data.get("usage") or usage
            ttft = ((first or time.perf_counter()) - started) * 1000
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            results.append((ttft, usage.get("prompt_tokens", 0), cached))
    cold = results[0]
    return PrefixResult(prompt_tokens=cold[1], cold_ttft_ms=cold[0], warm_ttft_ms=[r[0] for r in results[1:]],
                        cached_tokens=[r[2] for r in results[1:]])


@dataclass
class EngineBenchReport:
    levels: list[LevelResult]
    prefix: PrefixResult | None
    settings: dict[str, Any]

    def by(self, system: str, concurrency: int) -> LevelResult | None:
        return next((lv for lv in self.levels if lv.system == system and lv.concurrency == concurrency), None)

    def ratios(self, at: int) -> dict[str, float | None]:
        ours, single = self.by("gatehouse", at), self.by("gatehouse", 1)
        raw, server = self.by("raw-decode", at), self.by("llama_cpp.server", at)
        tps = lambda level: level.steady_tokens_per_second if level else None  # noqa: E731
        return {
            f"gatehouse@{at} / gatehouse@1": ratio(tps(ours), tps(single)),
            f"gatehouse@{at} / raw-decode@{at}": ratio(tps(ours), tps(raw)),
            f"gatehouse@{at} / llama_cpp.server@{at}": ratio(tps(ours), tps(server)),
        }

    def to_json(self) -> bytes:
        data = {"settings": self.settings, "levels": [asdict(lv) for lv in self.levels],
                "prefix": {**asdict(self.prefix), "speedup": self.prefix.speedup} if self.prefix else None,
                "ratios": {str(c): self.ratios(c) for c in sorted({lv.concurrency for lv in self.levels})}}
        return orjson.dumps(data, option=orjson.OPT_INDENT_2)


def run_engine_bench(model_path: str, levels: Sequence[int], requests_per_level: int, max_tokens: int,
                     compare_server: bool, threads: int | None, progress: Callable[[str], object]) -> EngineBenchReport:

    threads = threads or available_cpus()  # the same for every system measured
    results: list[LevelResult] = []
    settings = {"levels": list(levels), "requests_per_level": requests_per_level, "max_tokens": max_tokens,
                "threads": threads, "cpus": os.cpu_count(), "model": Path(model_path).name}
    prefix = None
    with gatehouse_server(model_path, max(levels), threads) as (url, key):
        asyncio.run(closed_loop("gatehouse", url, key, "bench", 1, 2, 8))  # warm-up
        for level in levels:
            progress(f"gatehouse, concurrency {level}")
            results.append(asyncio.run(closed_loop("gatehouse", url, key, "bench", level,
                                                   max(requests_per_level, 4 * level), max_tokens)))
        progress("gatehouse, shared system prompt")
        prefix = asyncio.run(prefix_effect(url, key, "bench", 4))
    if compare_server:
        with llama_cpp_server(model_path, threads) as url:
            asyncio.run(closed_loop("llama_cpp.server", url, "none", "bench", 1, 2, 8))
            for level in levels:
                progress(f"llama_cpp.server, concurrency {level}")
                results.append(asyncio.run(closed_loop("llama_cpp.server", url, "none", "bench", level,
                                                       max(requests_per_level, 4 * level), max_tokens)))
    for level in levels:
        progress(f"raw decode loop, {level} sequences")
        results.append(raw_decode_ceiling(model_path, level, max_tokens, threads))
    return EngineBenchReport(results, prefix, settings)
