"""Label values with a ceiling, so a caller cannot grow the metric series without bound, and
what the identity label holds (``GATEHOUSE_METRICS_IDENTITY_LABEL``)."""

from __future__ import annotations

from collections.abc import Callable

from gatehouse.core.decision import RequestRecord

OTHER = "_other"
NO_TEAM = "_no_team"            # the identity belongs to no team
TEAM_UNKNOWN = "_team_unknown"  # the record does not say which team the identity is in
# gen_ai.operation.name of each endpoint (metrics and traces)
OPERATION = {"chat/completions": "chat", "completions": "text_completion", "embeddings": "embeddings"}
_MISSING = object()


def _team(record: RequestRecord) -> str | None:
    if record.identity is None:  # refused before anyone was authenticated
        return None
    team = getattr(record, "team", _MISSING)  # the team the request path put on the record, where it does
    if team is _MISSING:
        return TEAM_UNKNOWN
    return str(team) if team else NO_TEAM


# what ``gatehouse_identity`` holds, by setting: the identity's name, its team, or nothing at all
IDENTITY_LABELS: dict[str, Callable[[RequestRecord], str | None]] = {
    "name": lambda record: record.identity,
    "team": _team,
    "none": lambda record: None,
}


class BoundedLabel:
    """The first ``limit`` distinct values keep their own series; later ones share ``_other``.

    A fixed cap rather than an allow-list: the identities that call first are the ones that
    exist, and a scrape stays a few thousand series however many keys are minted later.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if value is None:
            return ""
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(value)
        return value
