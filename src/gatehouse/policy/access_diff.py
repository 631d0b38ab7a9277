"""Whose access a policy change moves, and how: the per-identity part of the plan.

Access is a function of the grant *rules* alone: an identity reaches an alias at the highest
class among the (subject, alias) rules whose subject it matches (``access.access_of``). So an
identity that matches no subject of a rule the change adds, removes or re-classes keeps exactly
the access it had, and the diff only needs the identities that match one of those subjects —
the change's ``Reach`` — and only the aliases those rules name. Nothing is estimated: within the
reach every access answer is computed in full, and the property tests hold the result equal to
a brute-force evaluation of both policies over every identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gatehouse.core.classification import rank
from gatehouse.identity.view import IdentityView
from gatehouse.policy.access import AccessIndex, Profile, Requirement, RequirementIndex, requirement, subject_text
from gatehouse.policy.schema import PolicyDocument

Rules = dict[tuple[Requirement, str], str]  # (what a subject requires, alias) → the highest class granted
Moves = list[tuple[str, str | None, str | None]]  # (alias, class before, class after); None: no access


_RULES: list[tuple[PolicyDocument, Rules]] = []  # the last few documents' rules (documents are immutable)


def rules_of(document: PolicyDocument) -> Rules:
    """Every grant as (subject, alias) rules, each at the highest class any grant gives it."""
    for known, rules in _RULES:
        if known is document:
            return rules
    rules = _rules_of(document)
    _RULES[:] = [*_RULES[-3:], (document, rules)]
    return rules


def _rules_of(document: PolicyDocument) -> Rules:
    rules: Rules = {}
    for grant in document.grants:
        for subject in grant.subjects:
            required = requirement(subject)
            for alias in grant.aliases:
                key = (required, alias)
                if key not in rules or rank(grant.max_data_class) > rank(rules[key]):
                    rules[key] = grant.max_data_class
    return rules


@dataclass(frozen=True)
class Reach:
    """What a change can affect: the subjects of the rules it changes, and their aliases."""

    requirements: tuple[Requirement, ...]  # in a fixed order
    aliases: frozenset[str]

    @classmethod
    def of(cls, before: PolicyDocument, after: PolicyDocument) -> Reach:
        return RuleDiff.of(before, after).reach


class RuleDiff:
    """The (subject, alias) rules two versions differ in: added, removed or at another class."""

    _last: RuleDiff | None = None  # the latest, for the plan that follows its reach (documents are immutable)

    @classmethod
    def of(cls, before: PolicyDocument, after: PolicyDocument) -> RuleDiff:
        last = cls._last
        if last is None or last.before is not before or last.after is not after:
            last = cls._last = cls(before, after)
        return last

    def __init__(self, before: PolicyDocument, after: PolicyDocument) -> None:
        self.before, self.after = before, after
        self.old, self.new = rules_of(before), rules_of(after)
        self.changed = [key for key in self.old.keys() | self.new.keys() if self.old.get(key) != self.new.get(key)]
        self.reach = Reach(tuple(sorted({required for required, _ in self.changed}, key=repr)),
                           frozenset(alias for _, alias in self.changed))

    def texts(self) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
        """(who, alias, class) of the rules the new version has and the old one does not at that
        class, and the other way round; each by who, then alias."""
        who = {requirement(subject): subject for document in (self.after, self.before)
               for grant in document.grants for subject in grant.subjects}
        text = {required: subject_text(who[required]) for required in self.reach.requirements}
        added = sorted((text[required], alias, self.new[required, alias]) for required, alias in self.changed
                       if (required, alias) in self.new)
        removed = sorted((text[required], alias, self.old[required, alias]) for required, alias in self.changed
                         if (required, alias) in self.old)
        return added, removed


class InReach:
    """Whether an identity matches a subject of the reach: by the same requirement index as
    access itself, one answer per profile."""

    def __init__(self, reach: Reach) -> None:
        self.index = RequirementIndex()
        for number, required in enumerate(reach.requirements):
            self.index.add(required, number)
        self.answers: dict[Profile, bool] = {}

    def __call__(self, identity: IdentityView) -> bool:
        profile = self.index.profile(identity)
        answer = self.answers.get(profile)
        if answer is None:
            answer = self.answers[profile] = bool(self.index.matching(identity))
        return answer


def in_reach(reach: Reach, identities: Iterable[IdentityView]) -> list[IdentityView]:
    """The identities whose access the change can move, in the order given."""
    test = InReach(reach)
    return [identity for identity in identities if test(identity)]


def access_moves(diff: RuleDiff, identities: Iterable[IdentityView]) -> Iterator[tuple[str, Moves]]:
    """(identity name, its moves) for every identity whose access changes, in the order given,
    each identity's moves by alias. Identities of one profile share one list: do not change it."""
    reach = diff.reach
    if not reach.requirements:
        return
    test = InReach(reach)
    old_index = AccessIndex(diff.before, aliases=reach.aliases)
    new_index = AccessIndex(diff.after, aliases=reach.aliases)
    named = test.index.named | old_index.subjects.named | new_index.subjects.named
    moves_of: dict[Profile, Moves] = {}  # identities that no subject names and share the rest move alike
    for identity in identities:
        profile = (identity.name if identity.name in named else None, identity.team, identity.environment,
                   identity.labels)
        moves = moves_of.get(profile)
        if moves is None:
            moves = moves_of[profile] = _moves(old_index, new_index, identity) if test(identity) else []
        if moves:
            yield identity.name, moves


def _moves(old_index: AccessIndex, new_index: AccessIndex, identity: IdentityView) -> Moves:
    old, new = old_index.access(identity), new_index.access(identity)
    return [(alias, old.get(alias), new.get(alias)) for alias in sorted(old.keys() | new.keys())
            if old.get(alias) != new.get(alias)]
