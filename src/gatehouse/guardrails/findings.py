"""What a detector reports: where, what kind, how sure. Never the matched text itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str   # pii | secrets | injection | terms
    kind: str       # email, credit_card, aws_access_key_id, ignore_instructions, …
    start: int      # offsets in the caller's text as sent (a detector's view maps its own back)
    end: int
    score: float    # 0..1: how sure the detector is

    def as_dict(self) -> dict:
        return {"detector": self.detector, "kind": self.kind, "start": self.start, "end": self.end,
                "score": round(self.score, 2)}
