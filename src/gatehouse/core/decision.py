"""What one inference request leaves behind: its decision record, as the request path fills
it in and the observers (metrics, per-minute usage, traces) and the record writer read it.

A typed record rather than a dict: every field is named here, and nothing rides along
unseen. ``trace``, ``kept`` and ``team`` are not stored: the request's trace while it runs
(turned into spans by the tracing observer), whether a stream's record was already added, and
the identity's team (a metrics label). The stored columns are ``STORED`` (the
``decision_records`` table); the record never holds request or answer text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

STORED = ("request_id", "ts", "identity", "key_id", "endpoint", "alias", "deployment", "fallbacks", "policy_version",
          "data_class", "guardrails", "status", "error_code", "stream", "prompt_tokens", "completion_tokens",
          "latency_ms", "ttft_ms")

MAX_VERDICTS = 64  # verdicts a record keeps
MAX_FIELD = 120    # characters of a verdict's field path


@dataclass(slots=True, eq=False)
class RequestRecord:
    request_id: str
    ts: datetime
    endpoint: str
    policy_version: str
    identity: str | None = None
    key_id: str | None = None
    alias: str | None = None                    # the model the caller named (an alias, or whatever they typed)
    deployment: str | None = None               # the deployment that answered
    fallbacks: list[str] = field(default_factory=list)  # "deployment=reason" for each one skipped or failed
    data_class: str | None = None
    guardrails: list[dict[str, Any]] | None = None  # verdicts: rule, action, field path, offsets; never text
    status: int = 200
    error_code: str | None = None
    stream: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    trace: Any = None                           # not stored: the running trace, for the tracing observer
    kept: bool = False                          # not stored: a stream's record was added (at [DONE] or its end)
    team: str | None = None                     # not stored: the identity's team, for a metrics label

    def add_verdicts(self, verdicts: list[dict[str, Any]]) -> None:
        if verdicts:
            self.guardrails = (self.guardrails or []) + verdicts

    def row(self) -> dict[str, Any]:
        """The stored columns, for the ``decision_records`` table. At most ``MAX_VERDICTS``
        verdicts are kept (then one saying how many more there were), each field path cut to
        ``MAX_FIELD``: a request full of findings must not make its record grow with it."""
        row = {name: getattr(self, name) for name in STORED}
        verdicts = self.guardrails
        if verdicts and (len(verdicts) > MAX_VERDICTS or any(len(str(v.get("field", ""))) > MAX_FIELD for v in verdicts)):
            kept = [v | {"field": str(v["field"])[:MAX_FIELD]} if "field" in v else v for v in verdicts[:MAX_VERDICTS]]
            if len(verdicts) > MAX_VERDICTS:
                kept.append({"rule": "verdicts.truncated", "action": "none", "shadow": True,
                             "count": len(verdicts) - MAX_VERDICTS})
            row["guardrails"] = kept
        return row
