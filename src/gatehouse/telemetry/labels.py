"""Label values with a ceiling, so a caller cannot grow the metric series without bound."""

from __future__ import annotations

OTHER = "_other"
# gen_ai.operation.name of each endpoint (metrics and traces)
OPERATION = {"chat/completions": "chat", "completions": "text_completion", "embeddings": "embeddings"}


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
