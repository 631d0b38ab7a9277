"""What each request says: prompt and output lengths, shared prefixes, request bodies.

Lengths are in tokens of a synthetic vocabulary of short, common English words, each of
which is one token in the usual BPE and SentencePiece vocabularies, so a "200-token
prompt" is close to 200 tokens on most models. The usage the server reports is what the
report counts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from gatehouse.bench.scenario import (
    EmpiricalLength,
    FixedLength,
    LognormalLength,
    NormalLength,
    Scenario,
    UniformLength,
)

WORDS = ("the time people way day man thing woman life child world school state family student group country "
         "problem hand part place case week company system program question work government number night point "
         "home water room mother area money story fact month lot right study book eye job word business issue "
         "side kind head house service friend father power hour game line end member law car city name team "
         "minute idea kid body back parent face others level office door health person art war history party "
         "result change morning reason research girl guy moment air teacher force education").split()

Sampler = Callable[[], int]


def read_lengths(path: Path) -> list[int]:
    text = path.read_text()
    try:
        values = orjson.loads(text) if text.lstrip().startswith("[") else [int(line) for line in text.split() if line]
    except (ValueError, orjson.JSONDecodeError):
        raise ValueError(f"{path}: expected whole numbers, one per line, or a JSON list") from None
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{path}: expected a non-empty list of positive whole numbers")
    return values


def length_sampler(spec: Any, rng: random.Random, base: Path) -> Sampler:
    def clamp(value: float) -> int:
        return max(spec.min, min(spec.max, round(value)))

    if isinstance(spec, FixedLength):
        return lambda: spec.value
    if isinstance(spec, UniformLength):
        return lambda: rng.randint(spec.min, spec.max)
    if isinstance(spec, NormalLength):
        return lambda: clamp(rng.gauss(spec.mean, spec.stddev))
    if isinstance(spec, LognormalLength):
        return lambda: clamp(rng.lognormvariate(math.log(spec.median), spec.sigma))
    if isinstance(spec, EmpiricalLength):
        values = spec.values if spec.values is not None else read_lengths(base / str(spec.file))
        return lambda: rng.choice(values)
    raise TypeError(f"not a length: {spec!r}")


def words(count: int, rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=count))


class Workload:
    """Draws the prompt and output length of each request and builds its body."""

    def __init__(self, scenario: Scenario, base: Path, rng: random.Random) -> None:
        self.scenario = scenario
        self.rng = rng
        prompt = scenario.prompt
        self.prompt_tokens = length_sampler(prompt.tokens, rng, base)
        self.output_tokens = length_sampler(scenario.output.tokens, rng, base)
        self.long_tokens = length_sampler(prompt.long_context.tokens, rng, base) if prompt.long_context else None
        prefix = prompt.shared_prefix
        self.prefixes = ([words(prefix.tokens, random.Random(f"{scenario.seed}:prefix:{g}")) for g in range(prefix.groups)]
                         if prefix else [])
        self._serial = 0

    def draw(self, overrides: dict[str, Any] | None = None) -> tuple[str | None, str, int]:
        """(shared prefix or None, the request's own text, max_tokens)."""
        overrides = overrides or {}
        long = self.scenario.prompt.long_context
        if "prompt_tokens" in overrides:
            count = overrides["prompt_tokens"]
        elif long is not None and self.long_tokens is not None and self.rng.random() < long.share:
            count = self.long_tokens()
        else:
            count = self.prompt_tokens()
        output = overrides.get("output_tokens") or self.output_tokens()
        prefix = None
        shared = self.scenario.prompt.shared_prefix
        if shared is not None and self.prefixes and self.rng.random() < shared.share:
            prefix = self.rng.choice(self.prefixes)
        self._serial += 1
        # A unique opening word keeps the request's own part out of any prefix cache.
        return prefix, f"r{self._serial} " + words(max(count - 1, 0), self.rng), output


def request_body(scenario: Scenario, model: str, history: list[dict[str, str]], prefix: str | None,
                 max_tokens: int) -> bytes:
    """``history`` is the conversation so far, ending with the new user turn."""
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "stream": scenario.stream}
    if scenario.stream:
        body["stream_options"] = {"include_usage": True}
    if scenario.endpoint == "chat":
        body["messages"] = ([{"role": "system", "content": prefix}] if prefix else []) + history
    else:
        turns = [turn["content"] for turn in history]
        body["prompt"] = "\n".join(([prefix] if prefix else []) + turns)
    return orjson.dumps(body)
