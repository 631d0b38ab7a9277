"""Read a policy file and report every problem with its line number."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from gatehouse.core.yamldoc import DocumentError, Problem, load_document, read_document
from gatehouse.guardrails.schema import Guardrails
from gatehouse.monitoring.schema import Monitoring
from gatehouse.policy.schema import ChangeControl, PolicyDocument, RequestRules, reference_problems

__all__ = ["LoadedPolicy", "PolicyError", "Problem", "load_policy", "load_policy_text", "version_of"]


class PolicyError(DocumentError):
    kind = "policy"


@dataclass(frozen=True)
class LoadedPolicy:
    document: PolicyDocument
    text: str
    version: str  # "sha256:<hex>" of the canonical document

    @property
    def short_version(self) -> str:
        return self.version[:19]


# Fields of an alias or a deployment added after version 1 shipped, with their defaults (as JSON).
LATER_FIELDS: dict[str, dict[str, object]] = {
    "aliases": {"requests": RequestRules().model_dump(mode="json")},
    "deployments": {"context_length": None},
}


def version_of(document: PolicyDocument) -> str:
    dumped = document.model_dump(mode="json")
    # Sections added after version 1 shipped are left out while they hold their defaults, so
    # versions stored before they existed keep their hash.
    for section, default in (("change_control", ChangeControl()), ("guardrails", Guardrails()),
                             ("monitoring", Monitoring())):
        if getattr(document, section) == default:
            del dumped[section]
    # … and so are fields added to each alias or deployment since, while they hold their default
    for collection, fields in LATER_FIELDS.items():
        for item in dumped[collection].values():
            for name, value in fields.items():
                if item.get(name) == value:
                    del item[name]
    canonical = orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def load_policy_text(text: str, source: str = "<policy>") -> LoadedPolicy:
    document = load_document(text, source, PolicyDocument, PolicyError, "the policy file is empty",
                             "the policy must be a mapping with version, deployments, aliases, grants",
                             more_problems=reference_problems)
    return LoadedPolicy(document=document, text=text, version=version_of(document))


def load_policy(path: Path | str) -> LoadedPolicy:
    path = Path(path)
    text = read_document(path, PolicyError, "file not found (create one with `gatehouse init`)")
    return load_policy_text(text, str(path))
