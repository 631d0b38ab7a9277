"""Where requests go, by traffic share: for every alias, data class and endpoint, the deployments a
request is tried on, in order. The first answers; each next one only when every one before it
failed. A policy change that moves a deployment towards the front of that order, or that
changes how often a deployment hands requests on, moves traffic, and the plan asks for it.

The order is the gateway's: the alias's route, less the deployments not allowed the request's
data class (the gateway skips them, ``api.inference``) and those whose engine does not serve
the endpoint (the router skips them, ``engines.serving``). Only requests some grant lets
through are counted: an alias nobody is granted sends nothing anywhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gatehouse.core.classification import DATA_CLASSES, rank
from gatehouse.engines.base import ENDPOINTS
from gatehouse.engines.serving import serves
from gatehouse.engines.spec import Deployment, EmbeddedSettings, Timeouts
from gatehouse.policy.schema import PolicyDocument

Lane = tuple[str, str, str]  # (alias, data class, endpoint): requests that are routed alike
Order = tuple[str, ...]      # the deployments they are tried on, first one first

# Raising one of these only keeps more requests on the deployment (it waits longer, queues more);
# every other change to a timeout or an engine setting can make it hand more requests on.
KEEPS_WHEN_RAISED = frozenset({"timeouts.connect", "timeouts.first_token", "timeouts.read", "settings.max_waiting"})


def lanes(document: PolicyDocument) -> dict[Lane, Order]:
    """Every lane some grant lets requests into (each class up to the highest granted on the
    alias), with the deployments its requests are tried on."""
    granted: dict[str, int] = {}
    for grant in document.grants:
        for alias in grant.aliases:
            granted[alias] = max(granted.get(alias, 0), rank(grant.max_data_class))
    specs = document.deployments
    result: dict[Lane, Order] = {}
    for alias in sorted(granted):
        route = document.aliases[alias].route
        for data_class in DATA_CLASSES[: granted[alias] + 1]:
            allowed = tuple(name for name in route if data_class in specs[name].data_classes)
            for endpoint in ENDPOINTS:
                result[(alias, data_class, endpoint)] = tuple(name for name in allowed
                                                              if serves(specs[name].engine, endpoint))
    return result


def _listed(names: Iterable[str]) -> str:
    return ", ".join(names)


@dataclass(frozen=True)
class ShareChange:
    """The order of one alias's deployments changed for some of its requests (the data classes
    × endpoints named)."""

    alias: str
    data_classes: tuple[str, ...]
    endpoints: tuple[str, ...]
    before: Order | None  # None: the alias took no such requests (a grant rule now lets them in)
    after: Order | None   # None: it takes none any more
    locations: tuple[tuple[str, str], ...]  # (deployment, location) for every deployment named
    first_was_at: str | None = None  # where the first deployment of ``before`` was, as the old version says

    @property
    def promoted(self) -> Order:
        """Deployments these requests now reach earlier than before, or reach at all: each takes
        a share of traffic it did not have. Empty where the requests are new to the alias (the
        grant rule that lets them in is acknowledged instead) or no longer taken."""
        if self.before is None or self.after is None:
            return ()
        return tuple(name for index, name in enumerate(self.after)
                     if name not in self.before or index < self.before.index(name))

    @property
    def widens(self) -> bool:
        return bool(self.promoted)

    def location(self, deployment: str) -> str:
        return dict(self.locations)[deployment]

    @property
    def subject(self) -> str:
        """``chat public, internal`` (and the endpoints, when not every one)."""
        served = "" if self.endpoints == ENDPOINTS else f" ({_listed(self.endpoints)})"
        return f"{self.alias} {_listed(self.data_classes)}{served}"

    @staticmethod
    def _role(order: Order, name: str) -> str:
        index = order.index(name)
        if len(order) == 1:
            return "the only deployment"
        return "first" if index == 0 else f"tried after {_listed(order[:index])}"

    def widening(self, deployment: str) -> str:
        """The line an approver acknowledges for one promoted deployment."""
        assert self.before is not None and self.after is not None  # only promoted deployments have one
        role = self._role(self.after, deployment)
        now = "answers first" if role == "first" else f"is {role}"
        if not self.before:
            was = "no deployment took them"
        elif deployment in self.before:
            was = f"was {self._role(self.before, deployment)}"
        else:
            was = "was not tried"
        text = f"traffic: {self.subject} → {deployment} ({self.location(deployment)}) {now}; {was}"
        if self.after[0] == deployment and self.before:
            old, new = self.first_was_at or self.location(self.before[0]), self.location(deployment)
            if old != new:
                text += f"; first answers move from {old} to {new}"
        return text

    @property
    def description(self) -> str:
        def shown(order: Order | None) -> str:
            if order is None:
                return "not taken"
            if not order:
                return "refused: no deployment may receive them"
            return f"{order[0]} first" + (f", then {_listed(order[1:])}" if order[1:] else "")
        return f"{self.subject}: {shown(self.before)} → {shown(self.after)}"

    def as_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "data_classes": list(self.data_classes), "endpoints": list(self.endpoints),
                "before": list(self.before) if self.before is not None else None,
                "after": list(self.after) if self.after is not None else None,
                "first": self.after[0] if self.after else None, "promoted": list(self.promoted),
                "locations": dict(self.locations),
                "widens": self.widens, "description": self.description}


def share_changes(before: PolicyDocument, after: PolicyDocument) -> list[ShareChange]:
    """Every lane whose order changed, lanes that changed alike grouped: first the endpoints of
    one alias and class, then the classes of one alias whose endpoints changed alike."""
    old, new = lanes(before), lanes(after)
    locations = {name: spec.location for name, spec in before.deployments.items()}
    locations |= {name: spec.location for name, spec in after.deployments.items()}
    endpoints: dict[tuple[str, str, Order | None, Order | None], list[str]] = defaultdict(list)
    for lane in sorted(old.keys() | new.keys()):
        was, now = old.get(lane), new.get(lane)
        if was != now:
            alias, data_class, endpoint = lane
            endpoints[(alias, data_class, was, now)].append(endpoint)
    classes: dict[tuple[str, tuple[str, ...], Order | None, Order | None], list[str]] = defaultdict(list)
    for (alias, data_class, was, now), alike in endpoints.items():
        classes[(alias, tuple(sorted(alike, key=ENDPOINTS.index)), was, now)].append(data_class)
    changes = []
    for (alias, served, was, now), data_classes in classes.items():
        named = sorted(set(was or ()) | set(now or ()))
        first_was_at = before.deployments[was[0]].location if was else None  # not the new version's word for it
        changes.append(ShareChange(alias, tuple(sorted(data_classes, key=rank)), served, was, now,
                                   tuple((name, locations[name]) for name in named), first_was_at))
    changes.sort(key=lambda c: (c.alias, rank(c.data_classes[0]), tuple(map(ENDPOINTS.index, c.endpoints))))
    return changes


def handover_settings(spec: Deployment) -> dict[str, object]:
    """What decides how often a deployment fails over to the next one: its timeouts and, for
    the embedded engine, its capacity (defaults filled in)."""
    values: dict[str, object] = {f"timeouts.{key}": value for key, value in spec.timeouts.model_dump().items()}
    if spec.engine == "embedded":
        settings = spec.settings or EmbeddedSettings()
        values |= {f"settings.{key}": value for key, value in settings.model_dump().items()}
    return values


def _hands_on_more(key: str, was: object, now: object) -> bool:
    if was == now:
        return False
    if key in KEEPS_WHEN_RAISED and isinstance(was, int | float) and isinstance(now, int | float):
        return now < was
    return True  # any other change, or a setting that appears or goes with the engine kind


@dataclass(frozen=True)
class FailoverChange:
    """A deployment's timeouts or capacity changed so that it can hand more of one alias's
    requests on to the deployments after it."""

    deployment: str
    location: str
    alias: str
    fields: tuple[tuple[str, str, str], ...]  # (setting, before, after)
    onto: tuple[tuple[str, str, tuple[str, ...]], ...]  # (deployment, location, data classes) it can hand on to
    against: str = ""  # for a deployment new under its name: what its settings are compared with

    @property
    def widening(self) -> str:
        changed = "; ".join(f"{key} {was} → {now}" for key, was, now in self.fields)
        targets = "; ".join(f"{name} ({location}) for {_listed(classes)}" for name, location, classes in self.onto)
        where = f"{self.location}, {self.against}" if self.against else self.location
        return f"failover: {self.deployment} ({where}) {changed} can hand {self.alias} requests on to {targets}"

    def as_dict(self) -> dict[str, Any]:
        compared = {"against": self.against} if self.against else {}  # only for a deployment new under its name
        return {"deployment": self.deployment, "location": self.location, "alias": self.alias, **compared,
                "fields": [list(f) for f in self.fields],
                "onto": [{"deployment": name, "location": location, "data_classes": list(classes)}
                         for name, location, classes in self.onto],
                "widens": True}


def _same_server(spec: Deployment) -> tuple[object, ...]:
    return (spec.engine, spec.url, spec.model_path, spec.model)


def _baseline(before: PolicyDocument, after: PolicyDocument, name: str) -> tuple[dict[str, object], str]:
    """What a deployment's handover settings are compared with: its own under the same name;
    for a name new to the policy, a deployment of the old version for the same server (one the
    new version no longer has first: a rename; keeping the old one defined is no way around
    it), else the engine's defaults. A renamed or new deployment that gives up sooner than that
    hands requests on as much as a kept one would."""
    if name in before.deployments:
        return handover_settings(before.deployments[name]), ""
    spec = after.deployments[name]
    same = [old_name for old_name, old_spec in sorted(before.deployments.items())
            if _same_server(old_spec) == _same_server(spec)]
    if same:  # False sorts first: one the new version dropped
        old_name = min(same, key=lambda candidate: candidate in after.deployments)
        same_what = "server" if spec.url else "model"
        return handover_settings(before.deployments[old_name]), f"new; compared with {old_name}, the same {same_what}"
    default = spec.model_copy(update={"timeouts": Timeouts(), "settings": None})
    return handover_settings(default), "new; compared with the defaults"


def failover_changes(before: PolicyDocument, after: PolicyDocument) -> list[FailoverChange]:
    """For every deployment whose handover settings changed so that it can fail more often
    (one new under its name compared with what it replaces, or the defaults, and only in lanes
    that existed before): per alias, the deployments after it in the new version's lanes."""
    old_lanes, new_lanes = lanes(before), lanes(after)
    changes: list[FailoverChange] = []
    for name in sorted(after.deployments):
        (was, against), now = _baseline(before, after, name), handover_settings(after.deployments[name])
        fields = tuple((key, str(was.get(key, "-")), str(now.get(key, "-"))) for key in sorted(was.keys() | now.keys())
                       if _hands_on_more(key, was.get(key), now.get(key)))
        if not fields:
            continue
        onto: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))  # alias → next → classes
        for lane, order in new_lanes.items():
            alias, data_class, _ = lane
            # a new name in a lane new to its alias comes with the grant rule that opens the lane
            if name in order and (not against or lane in old_lanes):
                for later in order[order.index(name) + 1:]:
                    onto[alias][later].add(data_class)
        for alias in sorted(onto):
            targets = tuple((later, after.deployments[later].location, tuple(sorted(classes, key=rank)))
                            for later, classes in sorted(onto[alias].items()))
            changes.append(FailoverChange(name, after.deployments[name].location, alias, fields, targets, against))
    return changes
