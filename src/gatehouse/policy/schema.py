"""The policy document, version 1: deployments (the engines' spec), aliases and their routes,
grants, change control, and the guardrails and monitoring sections each domain defines."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gatehouse.core.classification import DataClass
from gatehouse.core.schema import Strict
from gatehouse.core.yamldoc import Path_, items_in, mapping_in
from gatehouse.engines.spec import Deployment
from gatehouse.guardrails.schema import Guardrails, guardrail_reference_problems
from gatehouse.monitoring.schema import Monitoring, monitoring_reference_problems

NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$"


EXTRA_FIELD = r"[a-z][a-z0-9_]{0,63}"  # the whole name (fullmatch: "$" would let a trailing newline through)
UNSCANNABLE_FIELDS = frozenset({  # no guardrail can read them
    "prompt_embeds",        # tensors in place of the prompt
    "kv_transfer_params",   # vLLM disaggregated prefill: KV blocks computed elsewhere (any request's), not text
})
MAX_OUTPUT_TOKENS = 1_048_576
DEFAULT_OUTPUT_TOKENS = 131_072  # the most a request may ask for where the alias sets no max_output_tokens


class RequestRules(Strict):
    """What callers of an alias may send besides the OpenAI request shape, and its bounds."""

    extra_fields: tuple[str, ...] = Field((), description="top-level fields the engines take beyond OpenAI's "
                                          "(vLLM's documents, chat_template, guided_json): allowed, scanned as text")
    remote_urls: bool = Field(True, description="image, file and audio URLs over http(s), which the engine fetches; "
                              "false: refused (data: URLs still go)")
    max_output_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS,
                                          description="the most max_tokens / max_completion_tokens a request may ask")

    @field_validator("extra_fields")
    @classmethod
    def _field_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(EXTRA_FIELD, name):
                raise ValueError(f"extra field {name!r}: lower-case letters, digits and _ only, starting with a letter")
            if name in UNSCANNABLE_FIELDS:
                raise ValueError(f"extra field {name!r} holds no text a guardrail can read, so it cannot be allowed")
        if len(set(value)) != len(value):
            raise ValueError("an extra field is named twice")
        return value


class Alias(Strict):
    route: tuple[str, ...] = Field(min_length=1, description="deployments in order: primary, then fallbacks")
    description: str | None = None
    requests: RequestRules = RequestRules()

    @field_validator("route")
    @classmethod
    def _no_repeats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a deployment appears twice in the route")
        return value


class Subject(Strict):
    """Matches an identity when every field given matches."""

    identity: str | None = None
    team: str | None = None
    environment: str | None = None
    labels: dict[str, str] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Subject:
        if not (self.identity or self.team or self.environment or self.labels):
            raise ValueError("a subject needs at least one of identity, team, environment, labels")
        return self


class Grant(Strict):
    name: str = Field(pattern=NAME)
    subjects: tuple[Subject, ...] = Field(min_length=1)
    aliases: tuple[str, ...] = Field(min_length=1)
    max_data_class: DataClass = "internal"
    description: str | None = None


class ChangeControl(Strict):
    """How changes to this policy are governed, decided by the version in force."""

    approvers: int = Field(1, ge=0, le=10, description="approvals a change needs besides its author; 0: single-person mode")


class PolicyDocument(Strict):
    version: Literal[1]
    deployments: dict[str, Deployment] = Field(min_length=1)
    aliases: dict[str, Alias] = Field(min_length=1)
    grants: tuple[Grant, ...] = ()
    change_control: ChangeControl = ChangeControl()
    guardrails: Guardrails = Guardrails()
    monitoring: Monitoring = Monitoring()

    @field_validator("deployments", "aliases")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(NAME, name):
                raise ValueError(f"invalid name {name!r}: letters, digits and . _ : / - only")
        return value


def reference_problems(data: Any) -> list[tuple[Path_, str]]:
    """Cross-references a schema cannot express, each with the path it concerns.

    Works on the raw document so they are reported together with schema errors.
    """
    problems: list[tuple[Path_, str]] = []
    if not isinstance(data, dict):
        return problems
    deployments, aliases = mapping_in(data.get("deployments")), mapping_in(data.get("aliases"))
    for alias_name, alias in aliases.items():
        route = alias.get("route") if isinstance(alias, dict) else None
        for index, deployment in enumerate(items_in(route)):
            if isinstance(deployment, str) and deployment not in deployments:
                problems.append((("aliases", alias_name, "route", index),
                                 f"alias {alias_name!r} routes to unknown deployment {deployment!r}"))
    seen: set[str] = set()
    for position, grant in enumerate(items_in(data.get("grants"))):
        if not isinstance(grant, dict):
            continue
        name = grant.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append((("grants", position, "name"), f"grant name {name!r} is used twice"))
            seen.add(name)
        granted = grant.get("aliases")
        for index, alias_name in enumerate(items_in(granted)):
            if isinstance(alias_name, str) and alias_name not in aliases:
                problems.append((("grants", position, "aliases", index),
                                 f"grant {name!r} names unknown alias {alias_name!r}"))
    problems += guardrail_reference_problems(data, aliases)
    problems += monitoring_reference_problems(data, {"alias": aliases, "deployment": deployments})
    return problems
