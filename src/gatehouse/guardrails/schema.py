"""The ``guardrails`` section of a policy: profiles of detector rules, and who gets which."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gatehouse.core.schema import Strict
from gatehouse.core.yamldoc import items_in, mapping_in
from gatehouse.guardrails.classifier import NAME as CLASSIFIER_NAME
from gatehouse.guardrails.normalise import normalise
from gatehouse.guardrails.pii import KINDS as PII_KINDS
from gatehouse.guardrails.secrets import KINDS as SECRET_KINDS
from gatehouse.guardrails.terms import check_pattern

Action = Literal["allow", "redact", "block", "flag"]
DETECTOR_KINDS = {"pii": PII_KINDS, "secrets": SECRET_KINDS}


class DetectorRule(Strict):
    action: Action
    shadow: bool = False  # record what the action would have done; enforce nothing
    kinds: tuple[str, ...] | None = Field(None, min_length=1)  # only these kinds (pii, secrets); all when absent
    min_score: float = Field(0.5, ge=0, le=1)
    restore: bool = False  # redact: put the caller's values back where the answer repeats a placeholder

    @model_validator(mode="after")
    def _restore_needs_redact(self) -> DetectorRule:
        if self.restore and self.action != "redact":
            raise ValueError("restore applies to action: redact only")
        return self


class InjectionRule(DetectorRule):
    # a file in $GATEHOUSE_HOME/classifiers/ defining score(text) -> float; it runs when the
    # rule packs find nothing, and a score of at least min_score is a finding
    classifier: str | None = Field(None, pattern=CLASSIFIER_NAME)


MAX_TERM = 200  # characters of one banned term


class TermsRule(DetectorRule):
    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()  # RE2 syntax: linear time, no backreferences or lookaround

    @field_validator("patterns")
    @classmethod
    def _re2(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            problem = check_pattern(pattern)
            if problem:
                raise ValueError(f"pattern {pattern!r}: {problem}")
        return value

    @field_validator("terms")
    @classmethod
    def _words(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        blank = [term for term in value if not normalise(term).text.strip()]
        if blank:
            raise ValueError(f"terms must have visible characters: {blank!r}")
        long = [term[:40] + "…" for term in value if len(term) > MAX_TERM]
        if long:  # a stream holds back the longest term's length: a huge one would stop every answer
            raise ValueError(f"a term may have at most {MAX_TERM} characters: {long!r}")
        return value

    @model_validator(mode="after")
    def _something(self) -> TermsRule:
        if not self.terms and not self.patterns:
            raise ValueError("a terms rule needs 'terms' or 'patterns'")
        return self


class Profile(Strict):
    inherits: str | None = None
    description: str | None = None
    pii: DetectorRule | None = None
    secrets: DetectorRule | None = None
    injection: InjectionRule | None = None
    terms: TermsRule | None = None
    max_input_bytes: int | None = Field(None, gt=0)
    max_input_tokens: int | None = Field(None, gt=0)  # in the tokens of the deployment the request goes to
    output: bool | None = None  # apply the pii, secrets and terms rules to the model's answers too

    @model_validator(mode="after")
    def _kinds(self) -> Profile:
        for detector, known in DETECTOR_KINDS.items():
            rule = getattr(self, detector)
            unknown = [kind for kind in (rule.kinds or ()) if kind not in known] if rule else []
            if unknown:
                raise ValueError(f"{detector}: unknown kind(s) {', '.join(unknown)} (known: {', '.join(known)})")
        if self.injection is not None and self.injection.action == "redact":
            raise ValueError("injection: redact is not an action for it (block, flag or allow)")
        for detector in ("injection", "terms"):
            rule = getattr(self, detector)
            if rule is not None and rule.kinds is not None:
                raise ValueError(f"{detector}: 'kinds' applies to pii and secrets only")
        return self


class Assignment(Strict):
    """Who gets a profile. The most specific assignment wins: identity, then team, then alias."""

    profile: str
    identity: str | None = None
    team: str | None = None
    alias: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Assignment:
        if sum(value is not None for value in (self.identity, self.team, self.alias)) != 1:
            raise ValueError("an assignment names exactly one of identity, team or alias")
        return self


class Guardrails(Strict):
    profiles: dict[str, Profile] = {}
    default: str | None = None  # the profile for every request no assignment covers
    assign: tuple[Assignment, ...] = ()


def guardrail_reference_problems(data: dict, aliases: dict) -> list[tuple[tuple, str]]:
    """Profiles that inherit or assign what is not defined, and cycles; on the raw document,
    each with its path, so they are reported with the schema errors."""
    guardrails = mapping_in(data.get("guardrails"))
    profiles = mapping_in(guardrails.get("profiles"))
    problems: list[tuple[tuple, str]] = []
    for name, profile in profiles.items():
        parent, seen = profile.get("inherits") if isinstance(profile, dict) else None, {name}
        if parent is not None and parent not in profiles:
            problems.append((("guardrails", "profiles", name, "inherits"), f"profile {name!r} inherits unknown {parent!r}"))
            continue
        while isinstance(parent, str) and parent in profiles:
            if parent in seen:
                problems.append((("guardrails", "profiles", name, "inherits"), f"profile {name!r} inherits itself"))
                break
            seen.add(parent)
            parent = profiles[parent].get("inherits") if isinstance(profiles[parent], dict) else None
    default = guardrails.get("default")
    if isinstance(default, str) and default not in profiles:
        problems.append((("guardrails", "default"), f"default profile {default!r} is not defined"))
    assignments = items_in(guardrails.get("assign"))
    for position, assignment in enumerate(assignments):
        if not isinstance(assignment, dict):
            continue
        if isinstance(assignment.get("profile"), str) and assignment["profile"] not in profiles:
            problems.append((("guardrails", "assign", position, "profile"), f"profile {assignment['profile']!r} is not defined"))
        if isinstance(assignment.get("alias"), str) and assignment["alias"] not in aliases:
            problems.append((("guardrails", "assign", position, "alias"), f"unknown alias {assignment['alias']!r}"))
    return problems
