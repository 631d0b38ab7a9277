"""Who reaches which alias at which data class: the one definition of grant matching.

The gateway's authorization, the plan's access diff, the inventory, findings and transfers
all ask here. ``access_of`` is the definition (every grant, every subject); ``AccessIndex``
gives the same answer fast and is what everything on a hot or bulk path uses; the property
tests hold the two together.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

import orjson

from gatehouse.core.classification import DATA_CLASSES, rank
from gatehouse.identity.view import IdentityView
from gatehouse.policy.schema import PolicyDocument, Subject


def matches(subject: Subject, identity: IdentityView) -> bool:
    if subject.identity is not None and subject.identity != identity.name:
        return False
    if subject.team is not None and subject.team != identity.team:
        return False
    if subject.environment is not None and subject.environment != identity.environment:
        return False
    if subject.labels:
        have = dict(identity.labels)
        if any(have.get(key) != value for key, value in subject.labels.items()):
            return False
    return True


Access = dict[str, str]  # alias → the highest data class granted
Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs
Requirement = tuple[str | None, str | None, str | None, Labels]  # what a subject requires: identity, team, environment, labels
Profile = tuple[str | None, str | None, str, Labels]  # an identity's: its name only when a subject names it


def requirement(subject: Subject) -> Requirement:
    """Exactly what a subject requires; two subjects with the same requirement match the same identities."""
    return (subject.identity, subject.team, subject.environment, tuple(sorted((subject.labels or {}).items())))


def access_of(document: PolicyDocument, identity: IdentityView) -> Access:
    """By definition: every grant, every subject. ``AccessIndex`` gives the same answer fast."""
    access: Access = {}
    for grant in document.grants:
        if any(matches(subject, identity) for subject in grant.subjects):
            _widen(access, grant.aliases, grant.max_data_class)
    return access


def _widen(access: Access, aliases: Iterable[str], data_class: str) -> None:
    for alias in aliases:
        if alias not in access or rank(data_class) > rank(access[alias]):
            access[alias] = data_class


class RequirementIndex:
    """Numbers filed under requirements, found per identity without scanning them all: an
    identity only looks up the keys it could satisfy (its name or any, its team or any, its
    environment or any, each subset of its labels). Identities that no requirement names and
    that share team, environment and labels share a ``profile``."""

    def __init__(self) -> None:
        self.buckets: dict[Requirement, list[int]] = {}
        self.named: set[str] = set()
        self._label_sets: list[Labels] | None = None

    def add(self, required: Requirement, number: int) -> None:
        self.buckets.setdefault(required, []).append(number)
        if required[0] is not None:
            self.named.add(required[0])
        self._label_sets = None

    def _label_keys(self, labels: Labels) -> list[Labels]:
        """The required label sets this identity satisfies: its own subsets, or a scan of the
        sets subjects use, whichever is fewer."""
        if self._label_sets is None:
            self._label_sets = sorted({key[3] for key in self.buckets})
        if len(labels) < 16 and 2 ** len(labels) <= len(self._label_sets):
            return [combo for size in range(len(labels) + 1) for combo in combinations(labels, size)]
        have = set(labels)
        return [required for required in self._label_sets if all(pair in have for pair in required)]

    def profile(self, identity: IdentityView) -> Profile:
        named = identity.name in self.named
        return (identity.name if named else None, identity.team, identity.environment, identity.labels)

    def matching(self, identity: IdentityView) -> set[int]:
        """The numbers filed under every requirement this identity satisfies."""
        matched: set[int] = set()
        label_keys = self._label_keys(identity.labels)
        for name in ((identity.name, None) if identity.name in self.named else (None,)):
            for team in ((identity.team, None) if identity.team is not None else (None,)):
                for environment in (identity.environment, None):
                    for labels in label_keys:
                        matched.update(self.buckets.get((name, team, environment, labels), ()))
        return matched


class AccessIndex:
    """Access per identity without scanning every grant: subjects are filed under exactly what
    they require (``RequirementIndex``). Identities that no subject names and that share team,
    environment and labels share one answer (100,000 identities typically have a few thousand
    such profiles)."""

    def __init__(self, document: PolicyDocument, max_cached: int | None = None,
                 aliases: frozenset[str] | None = None) -> None:
        """``max_cached`` bounds the answers kept (a long-lived index: the gateway's); a plan's
        index keeps every answer, since the plan tells answers apart by identity. ``aliases``
        narrows every answer to those aliases (a plan's: the aliases its change can move), so
        only the grants that name one are filed."""
        self.max_cached = max_cached
        self.subjects = RequirementIndex()
        self.entries: list[tuple[tuple[str, ...], int]] = []  # per filed grant: its aliases, its class's rank
        for grant in document.grants:
            named = grant.aliases if aliases is None else tuple(alias for alias in grant.aliases if alias in aliases)
            if not named:
                continue
            for subject in grant.subjects:
                self.subjects.add(requirement(subject), len(self.entries))
            self.entries.append((named, rank(grant.max_data_class)))
        self.cache: dict[Profile, Access] = {}
        self.alias_sets: dict[Profile, frozenset[str]] = {}

    def access(self, identity: IdentityView) -> Access:
        profile = self.subjects.profile(identity)
        cached = self.cache.get(profile)
        if cached is not None:
            return cached
        best: dict[str, int] = {}
        for index in sorted(self.subjects.matching(identity)):
            aliases, level = self.entries[index]
            for alias in aliases:
                if best.get(alias, -1) < level:
                    best[alias] = level
        access: Access = {alias: DATA_CLASSES[level] for alias, level in best.items()}
        if self.max_cached is not None and len(self.cache) >= self.max_cached:
            self.cache.clear()
            self.alias_sets.clear()
        self.cache[profile] = access
        return access

    def aliases(self, identity: IdentityView) -> frozenset[str]:
        """The aliases this identity reaches at any class: what the gateway checks per request."""
        profile = self.subjects.profile(identity)
        cached = self.alias_sets.get(profile)
        if cached is None:
            cached = self.alias_sets[profile] = frozenset(self.access(identity))
        return cached


def _quoted(value: str) -> str:
    """Plain when it cannot be mistaken for structure, else JSON-quoted: a team named
    "sec & environment=dev" must not read like two conditions."""
    return value if value and all(c.isalnum() or c in "-_.:/@" for c in value) else orjson.dumps(value).decode()


def subject_text(subject: Subject) -> str:
    parts = [f"{key}={_quoted(value)}" for key, value in subject.model_dump(exclude_none=True).items() if key != "labels"]
    parts += [f"label:{_quoted(key)}={_quoted(value)}" for key, value in sorted((subject.labels or {}).items())]
    return " & ".join(parts)
