"""The active policy in the form the data plane asks questions of: routes, deployments,
access (through the one ``AccessIndex``) and the guardrail profiles, built once per version."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from gatehouse.engines.spec import Deployment
from gatehouse.guardrails.classifier import installed_digest, load_classifier
from gatehouse.guardrails.injection_model import default_model
from gatehouse.guardrails.profiles import ProfileIndex
from gatehouse.identity.view import IdentityView
from gatehouse.policy.access import AccessIndex, matches
from gatehouse.policy.loader import LoadedPolicy
from gatehouse.policy.schema import Grant

MAX_CACHED = 100_000  # access answers a worker keeps (identities a subject names each have their own)


@dataclass
class CompiledPolicy:
    loaded: LoadedPolicy

    @property
    def version(self) -> str:
        return self.loaded.version

    @property
    def deployments(self) -> dict[str, Deployment]:
        return self.loaded.document.deployments

    def has_alias(self, alias: str) -> bool:
        return alias in self.loaded.document.aliases

    def route(self, alias: str) -> tuple[str, ...]:
        return self.loaded.document.aliases[alias].route

    def grants_for(self, identity: IdentityView) -> list[Grant]:
        """The grants whose subjects match this identity, in document order (for showing which
        grant gives what; access itself comes from the index)."""
        return [grant for grant in self.loaded.document.grants
                if any(matches(subject, identity) for subject in grant.subjects)]

    @cached_property
    def guardrail_profiles(self) -> ProfileIndex:
        return ProfileIndex(self.loaded.document.guardrails)

    def prepare(self, home: Path) -> CompiledPolicy:
        """Build the guardrail profiles now, with the injection classifiers they name loaded from
        ``home/classifiers`` (GatehouseError if one is missing), rather than on a first request."""
        folder = home / "classifiers"
        self.__dict__["guardrail_profiles"] = ProfileIndex(self.loaded.document.guardrails,
                                                           lambda name: load_classifier(folder, name))
        default_model()  # the built-in injection model read now: a damaged installation fails here, not on a request
        return self

    def classifier_digests(self, home: Path) -> dict[str, str | None]:
        """Per profile with an injection rule, the digest of the classifier it runs with on this
        host (the built-in model's when it names none; None: not installed), inheritance applied."""
        digests: dict[str, str | None] = {}
        for name, profile in sorted(self.guardrail_profiles.profiles.items()):
            injection = profile.rules.get("injection")  # resolved: a child inherits its parent's rule
            if injection is not None:
                digests[name] = installed_digest(home, getattr(injection, "classifier", None))
        return digests

    @cached_property
    def access(self) -> AccessIndex:
        return AccessIndex(self.loaded.document, max_cached=MAX_CACHED)

    def granted_class(self, identity: IdentityView, alias: str) -> str | None:
        """The highest data class the grants give this identity on this alias."""
        return self.access.access(identity).get(alias)

    def allowed_aliases(self, identity: IdentityView) -> frozenset[str]:
        """Every alias some grant gives this identity (deny by default)."""
        return self.access.aliases(identity)
