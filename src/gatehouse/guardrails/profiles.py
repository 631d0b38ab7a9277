"""Which guardrail profile applies to a request, with inheritance resolved once per policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.injection import find_injection
from gatehouse.guardrails.normalise import TextView
from gatehouse.guardrails.pii import find_pii
from gatehouse.guardrails.schema import DetectorRule, Guardrails, Profile, TermsRule
from gatehouse.guardrails.secrets import find_secrets
from gatehouse.guardrails.terms import TermMatcher

DETECTORS = ("secrets", "pii", "injection", "terms")


@dataclass(frozen=True)
class EffectiveProfile:
    """A profile with its parents folded in: a child's rule replaces the parent's, whole."""

    name: str
    rules: dict[str, DetectorRule]
    max_input_bytes: int | None
    terms: TermMatcher | None
    output: bool = False
    max_input_tokens: int | None = None  # counted by the tokenizer of the deployment the request goes to
    classifier: Callable[[str], float] | None = None  # the injection rule's, once loaded

    def scan(self, text: str, detectors: tuple[str, ...] | None = None) -> list[Finding]:
        """Every finding in ``text`` from the detectors this profile runs (or those of them in
        ``detectors``), at their thresholds: all of them read one ``TextView`` of the text, and
        report offsets in ``text`` as it is."""
        found: list[Finding] = []
        view = TextView(text)
        for detector, rule in self.rules.items():
            if detectors is not None and detector not in detectors:
                continue
            kinds = frozenset(rule.kinds) if rule.kinds else None
            if detector == "pii":
                found += find_pii(view, kinds, rule.min_score)
            elif detector == "secrets":
                found += find_secrets(view, kinds, rule.min_score)
            elif detector == "injection":
                found += find_injection(view, self.classifier, threshold=rule.min_score)
            elif detector == "terms" and self.terms is not None:
                found += self.terms.find(view)
        return found


def _resolve(name: str, profiles: dict[str, Profile], classifiers: Callable[[str], Callable[[str], float]] | None
             ) -> EffectiveProfile:
    chain: list[Profile] = []
    current: str | None = name
    while current is not None:  # the loader refuses cycles and unknown parents
        chain.append(profiles[current])
        current = profiles[current].inherits
    rules: dict[str, DetectorRule] = {}
    max_bytes, max_tokens, output = None, None, False
    for profile in reversed(chain):  # root first, so children override
        for detector in DETECTORS:
            rule = getattr(profile, detector)
            if rule is not None:
                rules[detector] = rule
        max_bytes = profile.max_input_bytes if profile.max_input_bytes is not None else max_bytes
        max_tokens = profile.max_input_tokens if profile.max_input_tokens is not None else max_tokens
        output = profile.output if profile.output is not None else output
    terms_rule = rules.get("terms")
    # the terms rule can only be Profile.terms, a TermsRule: the check narrows, it filters nothing
    matcher = TermMatcher(terms_rule.terms, terms_rule.patterns) if isinstance(terms_rule, TermsRule) else None
    rules = {detector: rule for detector, rule in rules.items() if rule.action != "allow"}
    injection = rules.get("injection")
    named = getattr(injection, "classifier", None)
    classifier = classifiers(named) if named and classifiers is not None else None
    return EffectiveProfile(name, rules, max_bytes, matcher, output, max_tokens, classifier)


class ProfileIndex:
    def __init__(self, guardrails: Guardrails,
                 classifiers: Callable[[str], Callable[[str], float]] | None = None) -> None:
        """``classifiers`` loads an injection classifier by name; without it (plans, tests) the
        rule packs run alone."""
        self.profiles = {name: _resolve(name, guardrails.profiles, classifiers) for name in guardrails.profiles}
        self.default = self.profiles.get(guardrails.default) if guardrails.default else None
        self.by_identity = {a.identity: a.profile for a in guardrails.assign if a.identity is not None}
        self.by_team = {a.team: a.profile for a in guardrails.assign if a.team is not None}
        self.by_alias = {a.alias: a.profile for a in guardrails.assign if a.alias is not None}

    def for_request(self, identity: str, team: str | None, alias: str) -> EffectiveProfile | None:
        name = (self.by_identity.get(identity) or (self.by_team.get(team) if team else None) or self.by_alias.get(alias))
        return self.profiles[name] if name else self.default
