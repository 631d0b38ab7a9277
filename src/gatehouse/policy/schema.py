"""The policy document, version 1."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gatehouse.classification import DATA_CLASSES
from gatehouse.policy.guardrail_schema import Guardrails
from gatehouse.policy.monitoring_schema import Monitoring
from gatehouse.policy.schema_base import Strict

NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$"
OPENAI_COMPATIBLE = ("openai", "vllm", "sglang", "llama-server", "ollama", "tgi")
EngineKind = Literal["embedded", "openai", "vllm", "sglang", "llama-server", "ollama", "tgi"]
DataClass = Literal["public", "internal", "confidential", "restricted"]




class CredentialRef(Strict):
    """Where the secret that Gatehouse presents to an upstream lives. Never the secret itself."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CredentialRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (an environment variable name) or 'file' (a path)")
        return self


class Timeouts(Strict):
    connect: float = Field(5.0, gt=0, description="seconds to open the connection")
    first_token: float = Field(60.0, gt=0, description="seconds until the response (or first streamed chunk) starts")
    read: float = Field(120.0, gt=0, description="seconds allowed between two streamed chunks")


class EmbeddedSettings(Strict):
    slots: int = Field(8, ge=1, le=64, description="sequences decoded together (continuous batching)")
    context_size: int = Field(2048, ge=128, le=131072, description="tokens per sequence: prompt + completion")
    threads: int | None = Field(None, ge=1, le=256, description="CPU threads (default: every CPU this process may use)")
    batch_size: int = Field(512, ge=8, le=8192, description="tokens per decode step")
    prefill_chunk: int = Field(128, ge=1, le=8192,
                               description="prompt tokens per step while other sequences are decoding")
    max_waiting: int = Field(64, ge=0, le=10000, description="queued requests before 429")

    @model_validator(mode="after")
    def _batch_holds_every_slot(self) -> EmbeddedSettings:
        if self.slots > self.batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be at least slots ({self.slots}): "
                             "every decoding slot adds a token to each step's batch")
        return self


class Deployment(Strict):
    engine: EngineKind
    model: str = Field(min_length=1, max_length=300)
    url: str | None = None
    model_path: str | None = None
    location: Literal["on-prem", "cloud"] = "on-prem"
    data_classes: tuple[DataClass, ...] = ("public", "internal")
    credential: CredentialRef | None = None
    timeouts: Timeouts = Timeouts()
    settings: EmbeddedSettings | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _engine_fields(self) -> Deployment:
        if self.engine == "embedded":
            if self.url or self.credential:
                raise ValueError("an embedded deployment takes no 'url' or 'credential'")
        else:
            if not self.url:
                raise ValueError(f"a {self.engine} deployment needs 'url' (its OpenAI-compatible base URL)")
            if self.settings is not None or self.model_path is not None:
                raise ValueError("'settings' and 'model_path' apply to embedded deployments only")
        if not self.data_classes:
            raise ValueError("'data_classes' must list at least one data class")
        return self


class Alias(Strict):
    route: tuple[str, ...] = Field(min_length=1, description="deployments in order: primary, then fallbacks")
    description: str | None = None

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
    def _names(cls, value: dict) -> dict:
        for name in value:
            if not re.match(NAME, name):
                raise ValueError(f"invalid name {name!r}: letters, digits and . _ : / - only")
        return value


def reference_problems(data: Any) -> list[tuple[tuple, str]]:
    """Cross-references a schema cannot express, each with the path it concerns.

    Works on the raw document so they are reported together with schema errors.
    """
    problems: list[tuple[tuple, str]] = []
    if not isinstance(data, dict):
        return problems
    deployments = data.get("deployments") if isinstance(data.get("deployments"), dict) else {}
    aliases = data.get("aliases") if isinstance(data.get("aliases"), dict) else {}
    for alias_name, alias in aliases.items():
        route = alias.get("route") if isinstance(alias, dict) else None
        for index, deployment in enumerate(route if isinstance(route, list) else []):
            if isinstance(deployment, str) and deployment not in deployments:
                problems.append((("aliases", alias_name, "route", index),
                                 f"alias {alias_name!r} routes to unknown deployment {deployment!r}"))
    seen: set[str] = set()
    grants = data.get("grants") if isinstance(data.get("grants"), list) else []
    for position, grant in enumerate(grants):
        if not isinstance(grant, dict):
            continue
        name = grant.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append((("grants", position, "name"), f"grant name {name!r} is used twice"))
            seen.add(name)
        granted = grant.get("aliases")
        for index, alias_name in enumerate(granted if isinstance(granted, list) else []):
            if isinstance(alias_name, str) and alias_name not in aliases:
                problems.append((("grants", position, "aliases", index),
                                 f"grant {name!r} names unknown alias {alias_name!r}"))
    problems += _guardrail_problems(data, aliases)
    problems += _monitoring_problems(data, {"alias": aliases, "deployment": deployments})
    return problems


def _monitoring_problems(data: dict, defined: dict[str, dict]) -> list[tuple[tuple, str]]:
    monitoring = data.get("monitoring") if isinstance(data.get("monitoring"), dict) else {}
    thresholds = monitoring.get("thresholds") if isinstance(monitoring.get("thresholds"), list) else []
    problems: list[tuple[tuple, str]] = []
    for position, threshold in enumerate(thresholds):
        if not isinstance(threshold, dict) or threshold.get("per") not in defined:
            continue  # identities live in the store, not the policy
        only = threshold.get("only") if isinstance(threshold.get("only"), list) else []
        for index, name in enumerate(only):
            if isinstance(name, str) and name not in defined[threshold["per"]]:
                problems.append((("monitoring", "thresholds", position, "only", index),
                                 f"threshold {threshold.get('id')!r} names unknown {threshold['per']} {name!r}"))
    return problems


def _guardrail_problems(data: dict, aliases: dict) -> list[tuple[tuple, str]]:
    guardrails = data.get("guardrails") if isinstance(data.get("guardrails"), dict) else {}
    profiles = guardrails.get("profiles") if isinstance(guardrails.get("profiles"), dict) else {}
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
    assignments = guardrails.get("assign") if isinstance(guardrails.get("assign"), list) else []
    for position, assignment in enumerate(assignments):
        if not isinstance(assignment, dict):
            continue
        if isinstance(assignment.get("profile"), str) and assignment["profile"] not in profiles:
            problems.append((("guardrails", "assign", position, "profile"), f"profile {assignment['profile']!r} is not defined"))
        if isinstance(assignment.get("alias"), str) and assignment["alias"] not in aliases:
            problems.append((("guardrails", "assign", position, "alias"), f"unknown alias {assignment['alias']!r}"))
    return problems


assert tuple(DataClass.__args__) == DATA_CLASSES  # type: ignore[attr-defined]
