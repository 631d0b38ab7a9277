"""The development corpora for injection detection, read from bench/corpora/ (written by hand
for this project): indirect injections (a payload placed in a carrier document, with its span
known) and benign texts (carriers without their payload, documents, risky-word prompts, lines
of the project's own documentation). Used by train_injection_classifier.py and by
guardrail_accuracy.py --set dev; the report set comes from injection_report_corpus.py.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

CORPORA = Path(__file__).resolve().parent.parent / "bench" / "corpora"
PLACEMENTS = 3  # each payload is hidden in this many carriers, chosen with a fixed seed


@dataclass(frozen=True)
class Sample:
    text: str
    attack: bool
    kind: str                               # carrier kind, or the benign source
    span: tuple[int, int] | None = None     # where the payload is, for attacks
    group: int = -1                         # which payload (attacks) or which prompt (benign): for folds


def _fill(carrier: str, payload: str) -> tuple[str, tuple[int, int]]:
    at = carrier.index("{payload}")
    return carrier[:at] + payload + carrier[at + len("{payload}"):], (at, at + len(payload))


def _without_payload(carrier: str) -> str:
    """The carrier with its slot empty, and without the line that held it where nothing but
    markup is left on that line."""
    lines = [line for line in carrier.splitlines() if "{payload}" not in line or re.search(r"[A-Za-z]{2}", line.replace("{payload}", ""))]
    return "\n".join(lines).replace("{payload}", "").rstrip() + "\n"


def dev_attacks() -> list[Sample]:
    corpus = yaml.safe_load((CORPORA / "injection_dev.yaml").read_text())
    rng = random.Random(7)
    samples = []
    for group, payload in enumerate(corpus["payloads"]):
        for carrier in rng.sample(corpus["carriers"], PLACEMENTS):
            text, span = _fill(carrier["text"], payload)
            samples.append(Sample(text, True, carrier["kind"], span, group))
    return samples


def dev_benign() -> list[Sample]:
    corpus = yaml.safe_load((CORPORA / "injection_dev.yaml").read_text())
    prompts = yaml.safe_load((CORPORA / "benign_dev.yaml").read_text())["prompts"]
    samples = [Sample(_without_payload(carrier["text"]), False, carrier["kind"]) for carrier in corpus["carriers"]]
    samples += [Sample(text, False, "document", group=group) for group, text in enumerate(corpus["benign_documents"])]
    samples += [Sample(text, False, "prompt", group=group) for group, text in enumerate(prompts)]
    docs = (CORPORA / "benign_docs.txt").read_text().splitlines()
    samples += [Sample(line, False, "project_docs", group=group) for group, line in enumerate(docs)]
    return samples
