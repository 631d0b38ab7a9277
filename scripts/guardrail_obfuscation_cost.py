"""What normalisation costs on hostile bodies: the default-style profile (PII redact, secrets
block, injection block) over strings of 16, 64 and 256 KB made of what it has to undo —
many base64 runs, nested encodings, percent escapes, full-width text, zero-width characters —
timed in process. Time per KB that stays flat as the size grows is the linear scan ADR 0019
promises.

    .venv/bin/python scripts/guardrail_obfuscation_cost.py [REPEATS]
"""

import base64
import statistics
import sys
import time

from gatehouse.guardrails.profiles import ProfileIndex
from gatehouse.guardrails.schema import Guardrails

PROFILE = Guardrails.model_validate({"default": "standard", "profiles": {"standard": {
    "pii": {"action": "redact"}, "secrets": {"action": "block"}, "injection": {"action": "block"}}}})


def nested(text: bytes, depth: int) -> str:
    for _ in range(depth):
        text = base64.b64encode(text)
    return text.decode()


BODIES = {
    "base64 runs": lambda n: " ".join(nested(f"note {i} for the team".encode(), 1) for i in range(n)),
    "nested base64": lambda n: " ".join(nested(f"the quarterly numbers {i}".encode(), 3) for i in range(n)),
    "noise runs": lambda n: " ".join(nested(bytes((i * 37 + k * 101) % 256 for k in range(24)), 1) for i in range(n)),
    "percent escapes": lambda n: " ".join("%74%68%65%20%74%65%61%6d" for _ in range(n)),
    "full-width, zero-width": lambda n: " ".join("ｔｈｅ\u200bｔｅａｍ\u00adｒｅｖｉｅｗｅｄ" for _ in range(n)),
}


def main(repeats: int) -> None:
    profile = ProfileIndex(PROFILE).default
    for name, make in BODIES.items():
        figures = []
        for kb in (16, 64, 256):
            text, n = "", 1
            while len(text.encode()) < kb * 1024:
                n *= 2
                text = make(n)
            text = text.encode()[:kb * 1024].decode(errors="ignore")
            timings = []
            for _ in range(repeats):
                started = time.process_time()
                profile.scan(text)
                timings.append((time.process_time() - started) * 1000)
            figures.append(f"{kb} KB {statistics.median(timings):.1f} ms ({statistics.median(timings) / kb:.3f} ms/KB)")
        print(f"{name:>24}: " + ", ".join(figures))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
