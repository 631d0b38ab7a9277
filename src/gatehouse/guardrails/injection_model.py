"""The built-in prompt-injection classifier: a logistic regression over the word unigrams and
bigrams of each sentence-sized piece of a text (and of each pair of neighbouring pieces), the
text's score being its most suspicious piece's. An instruction hidden in a long document is
judged on its own words, not diluted by the document around it.

The weights are a small JSON file shipped in the package (``data/injection_model.json``),
written by ``scripts/train_injection_classifier.py`` from the project's own corpora
(``bench/corpora/``); nothing is downloaded. Inference is pure Python: dictionary look-ups.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from itertools import repeat

from gatehouse.core.errors import GatehouseError

MODEL_FILE = "injection_model.json"
FORMAT = 1
MAX_TOKENS = 40  # a piece longer than this (text without sentence ends) is cut into windows …
STRIDE = 20      # … that overlap by half, so no instruction falls between two of them
MIN_TOKENS = 6   # a shorter piece runs on into the next
# where one piece of a text ends: sentence ends, line-like breaks, and the markup instructions hide in
PIECE_END = re.compile(r"[.!?;]+(?:\s|$)|[\"<>{}\[\]()|`*#=\\]+|//+|\s-{2,}\s?|\s\+\s")
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokens(text: str) -> list[str]:
    """Words of normalised (lower-case) text."""
    return TOKEN.findall(text)


def features(words: list[str]) -> set[str]:
    """A piece's features: its words and its pairs of neighbouring words."""
    found = set(words)
    found.update(map(" ".join, zip(words, words[1:], strict=False)))
    return found


def pieces(text: str) -> Iterator[tuple[int, int, list[str], bool]]:
    """(start, end, words, first) of each piece of normalised text; a long one is cut into
    windows, and ``first`` is false for each window after the first of its piece. A piece of
    fewer than MIN_TOKENS words runs on into the next: punctuation between every word
    ("forward|the|inbox") does not cut an instruction into harmless single words."""
    position = 0
    found: list[tuple[int, int, str]] = []
    for boundary in [*PIECE_END.finditer(text), None]:
        end = boundary.start() if boundary is not None else len(text)
        found += [(m.start(), m.end(), m.group()) for m in TOKEN.finditer(text, position, end)]
        position = boundary.end() if boundary is not None else len(text)
        if len(found) < MIN_TOKENS and boundary is not None:
            continue
        if len(found) > MAX_TOKENS:
            starts = list(range(0, len(found) - MAX_TOKENS + 1, STRIDE))
            if starts[-1] != len(found) - MAX_TOKENS:
                starts.append(len(found) - MAX_TOKENS)
            for first in starts:
                window = found[first:first + MAX_TOKENS]
                yield window[0][0], window[-1][1], [word for _, _, word in window], first == 0
        elif found:
            yield found[0][0], found[-1][1], [word for _, _, word in found], True
        found = []


def units(text: str) -> Iterator[tuple[int, int, set[str]]]:
    """What is scored: each piece (or window of a long one), and each piece with the one
    after it (windows of one piece overlap already: they are not paired)."""
    previous: tuple[int, int, set[str]] | None = None
    for start, end, words, first in pieces(text):
        current = (start, end, features(words))
        yield current
        if previous is not None and first:
            yield previous[0], end, previous[2] | current[2]
        previous = current


@dataclass(frozen=True)
class Verdict:
    score: float  # 0..1
    start: int    # the most suspicious piece, in the scored text
    end: int


class InjectionModel:
    def __init__(self, weights: dict[str, float], bias: float, digest: str) -> None:
        self.weights = weights
        self.bias = bias
        self.digest = digest  # sha256 of the model file, first 16 hex digits: recorded with verdicts
        self.name = f"builtin:{digest}"

    @classmethod
    def from_bytes(cls, raw: bytes) -> InjectionModel:
        document = json.loads(raw)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"not an injection model of format {FORMAT}")
        weights = {str(feature): float(weight) for feature, weight in document["weights"].items()}
        return cls(weights, float(document["bias"]), hashlib.sha256(raw).hexdigest()[:16])

    def judge(self, text: str) -> Verdict:
        """The score of normalised ``text`` (its most suspicious unit's), and where that unit is."""
        weight = self.weights.get
        best, where = -math.inf, (0, len(text))
        for start, end, found in units(text):
            z = sum(map(weight, found, repeat(0.0)))
            if z > best:
                best, where = z, (start, end)
        if best == -math.inf:
            return Verdict(0.0, 0, 0)  # no words: nothing to judge
        return Verdict(1.0 / (1.0 + math.exp(-min(max(self.bias + best, -60.0), 60.0))), *where)

    def __call__(self, text: str) -> float:
        return self.judge(text).score


_default: InjectionModel | None = None


def default_model() -> InjectionModel:
    """The packaged model, read once (GatehouseError if the installation lacks it or it is damaged)."""
    global _default
    if _default is None:
        try:
            raw = resources.files("gatehouse.guardrails").joinpath("data", MODEL_FILE).read_bytes()
            _default = InjectionModel.from_bytes(raw)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GatehouseError(f"the built-in injection model ({MODEL_FILE}) cannot be read: {type(exc).__name__}; "
                                 "reinstall gatehouse") from None
    return _default
