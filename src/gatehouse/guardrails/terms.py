"""Banned terms and patterns: Aho-Corasick over folded text for word lists (one pass
whatever their number), RE2 for patterns (linear time: no catastrophic backtracking, whatever
a policy author writes). Both read the shared ``TextView``: terms its folded renderings,
patterns its plain ones (case kept; RE2 matches them case-insensitively)."""

from __future__ import annotations

import ahocorasick
import re2

from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.normalise import TextView, as_view, normalise


class TermMatcher:
    def __init__(self, terms: tuple[str, ...] = (), patterns: tuple[str, ...] = ()) -> None:
        self.automaton = None
        keys = {key for key in (normalise(term).text.strip() for term in terms) if key}
        if keys:
            self.automaton = ahocorasick.Automaton()
            for key in keys:
                self.automaton.add_word(key, key)
            self.automaton.make_automaton()
        options = _options()
        options.case_sensitive = False
        self.patterns = [(pattern, re2.compile(pattern, options)) for pattern in patterns]

    def find(self, text: str | TextView) -> list[Finding]:
        view = as_view(text)
        found: list[Finding] = []
        if self.automaton is not None:
            found += view.scan(self._terms, folded=True)
        if self.patterns:
            found += view.scan(self._patterns)
        return sorted(found, key=lambda f: f.start)

    def _terms(self, haystack: str) -> list[Finding]:
        assert self.automaton is not None
        found: list[Finding] = []
        for end, key in self.automaton.iter(haystack):
            start = end - len(key) + 1
            before = haystack[start - 1] if start > 0 else " "
            after = haystack[end + 1] if end + 1 < len(haystack) else " "
            if before.isalnum() or after.isalnum():
                continue  # whole words only: "ass" is not in "class"
            found.append(Finding("terms", "term", start, end + 1, 1.0))
        return found

    def _patterns(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for index, (_, pattern) in enumerate(self.patterns):
            for match in pattern.finditer(text):
                if match.end() > match.start():
                    found.append(Finding("terms", f"pattern_{index}", match.start(), match.end(), 1.0))
        return found


def check_pattern(pattern: str) -> str | None:
    """Why RE2 refuses a pattern (backreferences, lookaround), or None."""
    try:
        re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    return None


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported to the author, not logged by absl
    return options
