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
from gatehouse.policy.access import AccessIndex, Profile, Requirement, RequirementIndex, requirement
from gatehouse.policy.schema import PolicyDocument

Rules = dict[tuple[Requirement, str], str]  # (what a subject requires, alias) → the highest class granted
Moves = list[tuple[str, str | None, str | None]]  # (alias, class before, class after); None: no access


def rules_of(document: PolicyDocument) -> Rules:
    """Every grant as (subject, alias) rules, each at the highest class any grant gives it."""
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
        old, new = rules_of(before), rules_of(after)
        changed = [key for key in old.keys() | new.keys() if old.get(key) != new.get(key)]
        return cls(tuple(sorted({required for required, _ in changed}, key=repr)),
                   frozenset(alias for _, alias in changed))


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


def access_moves(before: PolicyDocument, after: PolicyDocument,
                 identities: Iterable[IdentityView]) -> Iterator[tuple[str, Moves]]:
    """(identity name, its moves) for every identity whose access changes, in the order given,
    each identity's moves by alias. Identities of one profile share one list: do not change it."""
    reach = Reach.of(before, after)
    if not reach.requirements:
        return
    test = InReach(reach)
    old_index, new_index = AccessIndex(before), AccessIndex(after)
    differences: dict[tuple[int, int], Moves] = {}  # per pair of cached answers (kept alive by the indexes)
    for identity in identities:
        if not test(identity):
            continue
        old, new = old_index.access(identity), new_index.access(identity)
        pair = (id(old), id(new))
        moves = differences.get(pair)
        if moves is None:
            moves = differences[pair] = [(alias, old.get(alias), new.get(alias))
                                         for alias in sorted((old.keys() | new.keys()) & reach.aliases)
                                         if old.get(alias) != new.get(alias)]
        if moves:
            yield identity.name, moves
