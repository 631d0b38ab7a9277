"""A decision record holds no caller text and does not grow with the request."""

from datetime import UTC, datetime

from gatehouse.core.decision import MAX_FIELD, MAX_VERDICTS, RequestRecord


def test_a_record_keeps_a_bounded_number_of_verdicts_and_says_how_many_it_dropped():
    record = RequestRecord("req_1", datetime.now(UTC), "chat/completions", "sha256:x")
    record.guardrails = [{"rule": "pii.email", "action": "redact", "shadow": False, "field": "m" * 500, "start": 0,
                          "end": 3}] * (MAX_VERDICTS + 10)
    row = record.row()
    assert len(row["guardrails"]) == MAX_VERDICTS + 1
    assert row["guardrails"][-1] == {"rule": "verdicts.truncated", "action": "none", "shadow": True, "count": 10}
    assert all(len(v["field"]) <= MAX_FIELD for v in row["guardrails"][:-1])
    assert len(record.guardrails) == MAX_VERDICTS + 10  # the request's own view is untouched
