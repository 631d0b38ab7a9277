"""The active policy in the form the data plane asks questions of."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from gatehouse.engines.spec import Deployment
from gatehouse.identity.view import IdentityView
from gatehouse.policy.access import matches
from gatehouse.policy.loader import LoadedPolicy
from gatehouse.policy.schema import Grant


@dataclass
class CompiledPolicy:
    loaded: LoadedPolicy
    _allowed_cache: dict[IdentityView, frozenset[str]] = field(default_factory=dict)

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
        """The grants whose subjects match this identity, in document order."""
        return [grant for grant in self.loaded.document.grants
                if any(matches(subject, identity) for subject in grant.subjects)]

    @cached_property
    def guardrail_profiles(self):  # type: ignore[no-untyped-def]
        from gatehouse.guardrails.profiles import ProfileIndex

        return ProfileIndex(self.loaded.document.guardrails)

    def prepare(self, home: Path) -> CompiledPolicy:
        """Build the guardrail profiles now, with the injection classifiers they name loaded from
        ``home/classifiers`` (GatehouseError if one is missing), rather than on a first request."""
        from gatehouse.guardrails.classifier import load_classifier
        from gatehouse.guardrails.profiles import ProfileIndex

        folder = home / "classifiers"
        self.__dict__["guardrail_profiles"] = ProfileIndex(self.loaded.document.guardrails,
                                                           lambda name: load_classifier(folder, name))
        return self

    @cached_property
    def _access_index(self):  # type: ignore[no-untyped-def]
        from gatehouse.policy.access import AccessIndex

        return AccessIndex(self.loaded.document)

    def granted_class(self, identity: IdentityView, alias: str) -> str | None:
        """The highest data class the grants give this identity on this alias."""
        return self._access_index.access(identity).get(alias)

    def allowed_aliases(self, identity: IdentityView) -> frozenset[str]:
        """Every alias some grant gives this identity (deny by default)."""
        cached = self._allowed_cache.get(identity)
        if cached is None:
            allowed: set[str] = set()
            for grant in self.loaded.document.grants:
                if any(matches(subject, identity) for subject in grant.subjects):
                    allowed.update(grant.aliases)
            cached = frozenset(allowed)
            if len(self._allowed_cache) > 100_000:
                self._allowed_cache.clear()
            self._allowed_cache[identity] = cached
        return cached
