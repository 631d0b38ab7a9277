"""Train the built-in injection classifier (gatehouse.guardrails.injection_model) from the
development corpora in bench/corpora/ and write its weights to
src/gatehouse/guardrails/data/injection_model.json. Pure Python and deterministic: the same
corpora give the same file, byte for byte (a unit test checks the shipped file against it).

What a unit is and how a text is scored live in injection_model (one place for both). Units of
an attack document that overlap its payload are positives; every other unit is a negative:
carriers without payloads, benign documents and prompts, lines of the project's docs.

    .venv/bin/python scripts/train_injection_classifier.py [--check] [--folds N]

--check compares with the shipped file instead of writing it; --folds N prints N-fold
cross-validated figures on the development set (folds by payload and by prompt), which is how
the constants below were chosen. The report set (injection_report_corpus.py) is never read here.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

from injection_corpora import Sample, dev_attacks, dev_benign

from gatehouse.guardrails.injection_model import FORMAT, MODEL_FILE, InjectionModel, units
from gatehouse.guardrails.normalise import normalise

OUTPUT = Path(__file__).resolve().parent.parent / "src" / "gatehouse" / "guardrails" / "data" / MODEL_FILE
EPOCHS = 12
LEARNING_RATE = 0.3
L2 = 1e-3
POSITIVE_WEIGHT = 3.0    # positives are few; each counts this much
MARGIN = 1.0             # the bias is lowered by this after training: a benign text needs to look much
                         # like an attack to reach 0.5 (false alarms block real work)
DIGITS = 4               # weights are rounded, so the file does not depend on the last bits of exp()


def labelled_units(samples: list[Sample]) -> list[tuple[frozenset[str], int]]:
    """(features, label) of every unit of every sample, each distinct pair once, in a fixed order."""
    seen: dict[tuple[frozenset[str], int], None] = {}
    for sample in samples:
        normalised = normalise(sample.text)
        for start, end, found in units(normalised.text):
            label = 0
            if sample.attack and sample.span is not None:
                original_start, original_end = normalised.span(start, end)
                label = int(original_start < sample.span[1] and sample.span[0] < original_end)
            seen.setdefault((frozenset(found), label), None)
    return sorted(seen, key=lambda item: (item[1], sorted(item[0])))


def train(samples: list[Sample]) -> tuple[dict[str, float], float]:
    examples = labelled_units(samples)
    weights: dict[str, float] = {}
    bias = 0.0
    rng = random.Random(1)
    order = list(range(len(examples)))
    for epoch in range(EPOCHS):
        rng.shuffle(order)
        rate = LEARNING_RATE / (1 + epoch)
        for index in order:
            found, label = examples[index]
            z = bias + sum(weights.get(feature, 0.0) for feature in found)
            p = 1.0 / (1.0 + math.exp(-min(max(z, -60.0), 60.0)))
            gradient = (p - label) * (POSITIVE_WEIGHT if label else 1.0)
            bias -= rate * gradient
            for feature in found:
                weight = weights.get(feature, 0.0)
                weights[feature] = weight - rate * (gradient + L2 * weight)
    kept = {feature: round(weight, DIGITS) for feature, weight in weights.items() if abs(round(weight, DIGITS)) >= 10 ** -DIGITS}
    return kept, round(bias - MARGIN, DIGITS)


def model_bytes(weights: dict[str, float], bias: float) -> bytes:
    document = {"format": FORMAT, "bias": bias, "weights": dict(sorted(weights.items()))}
    return (json.dumps(document, separators=(",", ":"), ensure_ascii=True) + "\n").encode()


def cross_validate(attacks: list[Sample], benign: list[Sample], folds: int) -> None:
    caught = alarms = 0
    for fold in range(folds):
        training = [s for s in attacks + benign if s.group < 0 or s.group % folds != fold]
        held_out = [s for s in attacks + benign if s.group >= 0 and s.group % folds == fold]
        weights, bias = train(training)
        model = InjectionModel(weights, bias, "cv")
        for sample in held_out:
            flagged = model(normalise(sample.text).text) >= 0.5
            caught += flagged and sample.attack
            alarms += flagged and not sample.attack
    held_attacks = len(attacks)
    held_benign = sum(s.group >= 0 for s in benign)
    print(f"{folds}-fold cross-validation on the development set: recall {caught / held_attacks:.3f} "
          f"({caught}/{held_attacks}), false alarms {alarms / held_benign:.4f} ({alarms}/{held_benign})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--folds", type=int, default=0)
    options = parser.parse_args()
    attacks, benign = dev_attacks(), dev_benign()
    if options.folds:
        cross_validate(attacks, benign, options.folds)
        return
    produced = model_bytes(*train(attacks + benign))
    if options.check:
        same = OUTPUT.exists() and OUTPUT.read_bytes() == produced
        print("the shipped model matches the corpora" if same else "the shipped model differs from what the corpora give")
        sys.exit(0 if same else 1)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(produced)
    print(f"wrote {OUTPUT} ({len(produced)} bytes, {json.loads(produced)['weights'].__len__()} weights)")


if __name__ == "__main__":
    main()
