"""What the input guardrails add to a request: the default-style profile (PII redact, secrets
block, injection block) over chat bodies of 1 KB and 16 KB of ordinary English with a little
personal data, timed in process (the gateway runs exactly this before dispatch).

    .venv/bin/python scripts/guardrail_latency.py [REPEATS]
"""

import copy
import random
import statistics
import sys
import time

from gatehouse.guardrails.inspect import inspect_input
from gatehouse.guardrails.profiles import ProfileIndex
from gatehouse.guardrails.schema import Guardrails

WORDS = ("the team reviewed quarterly revenue and customer feedback before the planning meeting while "
         "engineering shipped a fix for the login page and support answered questions about invoices").split()
PROFILE = Guardrails.model_validate({"default": "standard", "profiles": {"standard": {
    "pii": {"action": "redact"}, "secrets": {"action": "block"}, "injection": {"action": "block"}}}})


def body(size: int, rng: random.Random) -> dict:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < size - 60:
        words.append(rng.choice(WORDS))
    words.insert(len(words) // 2, "write to jane.doe@example.com or call +44 20 7946 0958")
    return {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": " ".join(words)}]}


def main(repeats: int) -> None:
    profile = ProfileIndex(PROFILE).default
    rng = random.Random(1)
    for size in (1024, 16384):
        template = body(size, rng)
        timings, cpu_times = [], []
        for _ in range(repeats):
            request = copy.deepcopy(template)
            started, cpu = time.perf_counter(), time.thread_time()
            inspect_input(profile, "chat/completions", request)
            timings.append((time.perf_counter() - started) * 1000)
            cpu_times.append((time.thread_time() - cpu) * 1000)
        timings.sort()
        print(f"{size // 1024:>2} KB prompt: median {statistics.median(timings):.3f} ms, "
              f"p99 {timings[int(len(timings) * 0.99) - 1]:.3f} ms over {repeats} requests; "
              f"CPU time median {statistics.median(cpu_times):.3f} ms (steadier on a busy machine)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
