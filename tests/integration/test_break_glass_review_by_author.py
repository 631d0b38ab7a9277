"""A break-glass review is someone other than the people behind the change looking at it: not
whoever broke the glass, and not whoever proposed the version it put in force (one person
proposes, a second breaks the glass with it, and the first "reviews" their own content;
issue 25 (c), review r25)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_separation_of_duties import AMY, NARROWER, PAT, PIA, appointment, org, policy_org  # noqa: F401  (fixtures)

from gatehouse.authz import Forbidden
from gatehouse.core.config import Settings
from gatehouse.policy import change_control
from gatehouse.store.db import Database


def test_the_author_of_the_version_does_not_review_its_break_glass(policy_org: tuple[Database, Settings]) -> None:  # noqa: F811
    db, settings = policy_org
    change_control.propose(db, PAT, NARROWER, "narrower")  # pat writes it (pat is an approver too)
    activation, _ = change_control.break_glass(db, PIA, NARROWER, "incident 1", timedelta(hours=1), settings=settings)
    with pytest.raises(Forbidden, match="nobody reviews a break-glass of a version they proposed"):
        change_control.review_break_glass(db, PAT, activation.seq, "looks fine to me")
    reviewed = change_control.review_break_glass(db, AMY, activation.seq, "checked the incident and the change")
    assert reviewed.reviewed_by == AMY
