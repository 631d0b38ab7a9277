"""The break-glass webhook lists the first 50 widenings; it also says how many there are, so
that a change with 300 does not read as one with 50 in the chat channel that hears of it
(review r25)."""

from __future__ import annotations

from datetime import timedelta

from gatehouse.core.clock import utcnow
from gatehouse.policy.change_control import BREAK_GLASS_WIDENINGS_SENT, break_glass_event
from gatehouse.policy.plan import Plan
from gatehouse.policy.planning import PlannedChange
from gatehouse.store.models import PolicyActivation


def test_the_event_counts_every_widening_it_does_not_list() -> None:
    planned = PlannedChange("sha256:b", "sha256:a", Plan(), "inv", 0,
                            {f"w-{n:010d}": f"rule: team=t{n} → chat at internal" for n in range(300)})
    activation = PolicyActivation(version="sha256:b", actor="person:pat@example.com", reason="incident",
                                  expires_at=utcnow() + timedelta(hours=1), back_to="sha256:a")
    event = break_glass_event(activation, planned)
    assert len(event["widenings"]) == BREAK_GLASS_WIDENINGS_SENT == 50
    assert event["widenings_total"] == 300
