"""What checking a request against the request model costs, alone and with the scan that
follows (pii redact, secrets block, injection block): per body, for a small chat request and
one with five tools of twenty parameters (every key of their schemas is scanned; a text that
repeats is scanned once).

    .venv/bin/python scripts/request_model_cost.py
"""

from __future__ import annotations

import copy
import timeit

from gatehouse.api.request_model import check_request
from gatehouse.guardrails.inspect import inspect_input
from gatehouse.guardrails.profiles import ProfileIndex
from gatehouse.guardrails.schema import Guardrails

SMALL = {"model": "chat", "max_tokens": 64, "temperature": 0.7, "stream": True, "stream_options": {"include_usage": True},
         "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "x" * 1000}]}
TOOL = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {
    "type": "object", "properties": {f"p{i}": {"type": "string", "description": "x"} for i in range(20)}}}}
TOOLS = dict(SMALL, tools=[TOOL] * 5)


PROFILE = ProfileIndex(Guardrails.model_validate({"default": "standard", "profiles": {"standard": {
    "pii": {"action": "redact"}, "secrets": {"action": "block"}, "injection": {"action": "block"}}}})).default


def checked_and_scanned(body: dict) -> None:
    body = copy.deepcopy(body)
    shape = check_request("chat/completions", body)
    assert PROFILE is not None
    inspect_input(PROFILE, "chat/completions", body, shape.sites, shape.binary_bytes)


def main() -> None:
    for name, body, number in (("small chat", SMALL, 20000), ("5 tools x 20 parameters", TOOLS, 2000)):
        seconds = min(timeit.repeat(lambda body=body: check_request("chat/completions", body), number=number, repeat=3))
        scan = min(timeit.repeat(lambda body=body: checked_and_scanned(body), number=max(number // 100, 20), repeat=3))
        sites = len(check_request("chat/completions", body).sites)
        print(f"{name:26s} check {seconds / number * 1e6:7.1f} us, check + scan "
              f"{scan / max(number // 100, 20) * 1e3:6.2f} ms per body ({sites} text sites)")


if __name__ == "__main__":
    main()
