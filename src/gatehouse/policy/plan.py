"""What a policy change would do: who gains or loses which model at which data class, which
deployments start or stop receiving which data, how routes change, and which deployment
answers which requests first (``flows``: traffic share, not route membership).

Access is computed, never estimated: an identity reaches an alias at the highest
``max_data_class`` among the grants that match it and name the alias. The property tests
check the diff against a brute-force evaluation of both policies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel

from gatehouse.core.classification import DATA_CLASSES, rank
from gatehouse.guardrails.normalise import normalise
from gatehouse.guardrails.profiles import DETECTORS, ProfileIndex
from gatehouse.guardrails.schema import DetectorRule, TermsRule
from gatehouse.identity.view import IdentityView
from gatehouse.policy.access_diff import RuleDiff, access_moves
from gatehouse.policy.flows import FailoverChange, ShareChange, failover_changes, share_changes
from gatehouse.policy.schema import DEFAULT_OUTPUT_TOKENS, PolicyDocument


class AccessChange(NamedTuple):  # a tuple: a large change holds a million of them
    identity: str
    alias: str
    before: str | None  # data class, or None: no access
    after: str | None

    @property
    def widens(self) -> bool:
        return self.after is not None and (self.before is None
                                           or rank(self.after) > rank(self.before))


@dataclass(frozen=True)
class RuleChange:
    """A grant rule (who, by attributes) gaining or losing an alias at a class: it applies to
    identities that do not exist yet as much as to those that do."""

    who: str
    alias: str
    data_class: str
    change: str  # "added" | "removed"


@dataclass(frozen=True)
class RouteChange:
    alias: str
    before: tuple[str, ...] | None
    after: tuple[str, ...] | None
    granted: bool = False  # some grant names the alias in the new version

    @property
    def added(self) -> list[str]:
        return [d for d in self.after or () if d not in (self.before or ())]

    @property
    def widens(self) -> bool:
        """Requests already allowed on the alias can now reach a deployment they could not."""
        return self.granted and self.before is not None and bool(self.added)

    @property
    def description(self) -> str:
        if self.before is None:
            return "new alias"
        if self.after is None:
            return "alias removed"
        added = [d for d in self.after if d not in self.before]
        removed = [d for d in self.before if d not in self.after]
        parts = [f"adds {', '.join(added)}"] if added else []
        parts += [f"drops {', '.join(removed)}"] if removed else []
        if not parts:
            parts = ["new order"]
        return "; ".join(parts)


@dataclass(frozen=True)
class FlowChange:
    deployment: str
    data_class: str
    change: str            # "starts" | "stops"
    location: str
    allowed: bool          # the deployment declares it may receive this class


SENSITIVE_FIELDS = ("engine", "url", "model", "model_path", "location", "data_classes", "credential")


@dataclass(frozen=True)
class DeploymentChange:
    """A deployment kept under its name but redefined: where its data goes, or with what secret."""

    deployment: str
    changes: tuple[tuple[str, str, str], ...]  # (field, before, after)
    added: bool = False
    removed: bool = False

    @property
    def widens(self) -> bool:
        return not self.removed and (self.added or any(name in SENSITIVE_FIELDS for name, _, _ in self.changes))

    @property
    def description(self) -> str:
        if self.added:
            return ", ".join(f"{name} {after}" for name, _, after in self.changes)
        if self.removed:
            return "removed"
        return "; ".join(f"{name} {before} → {after}" for name, before, after in self.changes)


ACTION_STRENGTH = {"allow": 0, "flag": 1, "redact": 2, "block": 3}


@dataclass(frozen=True)
class GuardrailChange:
    subject: str       # "profile standard: pii", "assignment team=trial", "default profile"
    before: str
    after: str
    loosens: bool      # less is caught, or less is done about it: an approver acknowledges it


def _rule_text(rule: BaseModel | None, without: frozenset[str] = frozenset()) -> str:
    """A guardrail rule or a threshold as its non-default settings."""
    if rule is None:
        return "-"
    dumped = rule.model_dump(exclude_defaults=True, exclude=set(without))
    return ", ".join(f"{k}={v}" for k, v in dumped.items())


def _rule_loosens(before: DetectorRule | None, after: DetectorRule | None) -> bool:
    """Less caught, or less done about it. Compared on resolved rules (inheritance applied)."""
    if before is None:
        return False
    if after is None:
        return True
    weaker = ACTION_STRENGTH[after.action] < ACTION_STRENGTH[before.action] or (after.shadow and not before.shadow)
    fewer_kinds = after.kinds is not None and (before.kinds is None or not set(before.kinds) <= set(after.kinds))
    fewer_terms = False
    if isinstance(before, TermsRule):

        def words(rule: DetectorRule) -> set[str]:
            return {normalise(term).text.strip() for term in getattr(rule, "terms", ())}
        fewer_terms = not words(before) <= words(after) or not set(before.patterns) <= set(getattr(after, "patterns", ()))
    # a classifier dropped or swapped catches something else; restoring puts values back in answers
    classifier_changed = getattr(before, "classifier", None) not in (None, getattr(after, "classifier", None))
    restores = getattr(after, "restore", False) and not getattr(before, "restore", False)
    return weaker or fewer_kinds or fewer_terms or after.min_score > before.min_score or classifier_changed or restores


def guardrail_changes(before: PolicyDocument, after: PolicyDocument) -> list[GuardrailChange]:
    """Per profile, what its rules become once inheritance is applied (editing a parent changes
    its children), the default profile, and who is assigned which profile."""

    old, new = before.guardrails, after.guardrails
    old_index, new_index = ProfileIndex(old), ProfileIndex(new)
    changes: list[GuardrailChange] = []
    for name in sorted(old.profiles.keys() | new.profiles.keys()):
        was, now = old_index.profiles.get(name), new_index.profiles.get(name)
        if was is None or now is None:
            changes.append(GuardrailChange(f"profile {name}", "defined" if was else "-", "defined" if now else "-",
                                           loosens=now is None))
            continue
        for detector in DETECTORS:
            a, b = was.rules.get(detector), now.rules.get(detector)  # None: not run (absent or allow)
            if a != b:
                changes.append(GuardrailChange(f"profile {name}: {detector}", _rule_text(a), _rule_text(b),
                                               _rule_loosens(a, b)))
        if was.output != now.output:
            changes.append(GuardrailChange(f"profile {name}: output", str(was.output), str(now.output), was.output))
        for limit in ("max_input_bytes", "max_input_tokens"):
            old_limit, new_limit = getattr(was, limit), getattr(now, limit)
            if old_limit != new_limit:
                looser = new_limit is None or (old_limit is not None and new_limit > old_limit)
                changes.append(GuardrailChange(f"profile {name}: {limit}", str(old_limit or "-"), str(new_limit or "-"),
                                               looser))
    if old.default != new.default:
        changes.append(GuardrailChange("default profile", old.default or "-", new.default or "-", old.default is not None))
    old_assign = {a.model_dump_json(exclude={"profile"}): a.profile for a in old.assign}
    new_assign = {a.model_dump_json(exclude={"profile"}): a.profile for a in new.assign}
    for target in sorted(old_assign.keys() | new_assign.keys()):
        if old_assign.get(target) != new_assign.get(target):
            who = ", ".join(f"{k}={v}" for k, v in orjson.loads(target).items() if v is not None)
            changes.append(GuardrailChange(f"assignment {who}", old_assign.get(target, "-"), new_assign.get(target, "-"),
                                           True))  # who gets which profile moved: reviewed like a loosening
    return changes


def _renamed_from(before: PolicyDocument, after: PolicyDocument, alias: str) -> str | None:
    """The alias of the old version a new alias most likely renames: one the new version no
    longer has, with the same route (first by name)."""
    route = after.aliases[alias].route
    return next((name for name in sorted(before.aliases) if name not in after.aliases
                 and before.aliases[name].route == route), None)


def request_rule_changes(before: PolicyDocument, after: PolicyDocument) -> list[GuardrailChange]:
    """What the callers of an alias may send (``requests``): a field allowed beyond the OpenAI
    shape, remote URLs allowed again, or a higher output-token bound lets more through, and is
    reviewed like a loosened guardrail. An alias kept under its name is compared with itself;
    one new under its name with the alias it renames (gone, same route), so that renaming
    ``chat`` with ``remote_urls: false`` to a ``chat-v2`` that leaves it out is seen."""
    changes = []
    pairs = [(alias, alias, f"alias {alias}") for alias in sorted(before.aliases.keys() & after.aliases.keys())]
    granted = {alias for grant in after.grants for alias in grant.aliases}
    for alias in sorted(after.aliases.keys() - before.aliases.keys()):
        old = _renamed_from(before, after, alias)
        if old is not None:
            pairs.append((old, alias, f"alias {alias} (new; compared with {old}, the same route)"))
        elif alias in granted and before.aliases:  # shown, as its lanes are: the grant rule is what is asked
            rules = after.aliases[alias].requests
            changes.append(GuardrailChange(
                f"alias {alias} (new): requests", "-",
                f"remote_urls {str(rules.remote_urls).lower()}; extra_fields {', '.join(rules.extra_fields) or '-'}; "
                f"max_output_tokens {rules.max_output_tokens or f'- ({DEFAULT_OUTPUT_TOKENS})'}", False))
    for old_alias, alias, subject in pairs:
        was, now = before.aliases[old_alias].requests, after.aliases[alias].requests
        added = sorted(set(now.extra_fields) - set(was.extra_fields))
        if set(was.extra_fields) != set(now.extra_fields):
            changes.append(GuardrailChange(f"{subject}: requests.extra_fields", ", ".join(was.extra_fields) or "-",
                                           ", ".join(now.extra_fields) or "-", bool(added)))
        if was.remote_urls != now.remote_urls:
            changes.append(GuardrailChange(f"{subject}: requests.remote_urls", str(was.remote_urls).lower(),
                                           str(now.remote_urls).lower(), now.remote_urls))
        if was.max_output_tokens != now.max_output_tokens:
            old_bound = was.max_output_tokens or DEFAULT_OUTPUT_TOKENS
            new_bound = now.max_output_tokens or DEFAULT_OUTPUT_TOKENS
            changes.append(GuardrailChange(f"{subject}: requests.max_output_tokens",
                                           str(was.max_output_tokens or "-"), str(now.max_output_tokens or "-"),
                                           new_bound > old_bound))
    return changes


def monitoring_changes(before: PolicyDocument, after: PolicyDocument) -> list[GuardrailChange]:
    """Thresholds added, removed or changed. Removing or changing one is reviewed like a
    loosening (a later limit, a shorter ladder, a narrower scope all mean less is watched)."""
    old = {t.id: t for t in before.monitoring.thresholds}
    new = {t.id: t for t in after.monitoring.thresholds}
    changes = []
    for name in sorted(old.keys() | new.keys()):
        was, now = old.get(name), new.get(name)
        if was != now:
            changes.append(GuardrailChange(f"threshold {name}", _rule_text(was, frozenset({"id"})),
                                           _rule_text(now, frozenset({"id"})), loosens=was is not None))
    return changes


@dataclass
class Plan:
    access: list[AccessChange] = field(default_factory=list)
    rules: list[RuleChange] = field(default_factory=list)
    routes: list[RouteChange] = field(default_factory=list)
    flows: list[FlowChange] = field(default_factory=list)
    deployments: list[DeploymentChange] = field(default_factory=list)
    approvers: tuple[int, int] | None = None  # change_control.approvers before, after, when it changes
    guardrails: list[GuardrailChange] = field(default_factory=list)
    monitoring: list[GuardrailChange] = field(default_factory=list)
    shares: list[ShareChange] = field(default_factory=list)        # who answers which requests first, and after whom
    failover: list[FailoverChange] = field(default_factory=list)   # settings that can hand requests on to others

    @property
    def gained(self) -> list[AccessChange]:
        return [change for change in self.access if change.widens]

    @property
    def lost(self) -> list[AccessChange]:
        return [change for change in self.access if not change.widens]

    @property
    def widenings(self) -> list[str]:
        """Every change an approver must acknowledge one by one: the grant rules that give
        access (every identity that gains, now or later, gains through one of them), the
        data flows that start, and every move of traffic: a deployment an alias's requests now
        reach earlier (or at all), and a setting that can make a deployment hand them on."""
        items = [f"rule: {r.who} → {r.alias} at {r.data_class}" for r in self.rules if r.change == "added"]
        items += [f"flow: {f.data_class} data → {f.deployment} ({f.location})" for f in self.flows if f.change == "starts"]
        items += [f"deployment: {d.deployment} {'added' if d.added else 'changes'} {d.description}"
                  for d in self.deployments if d.widens]
        items += [f"route: {r.alias} now reaches {', '.join(r.added)}" for r in self.routes if r.widens]
        items += [s.widening(name) for s in self.shares for name in s.promoted]
        items += [f.widening for f in self.failover]
        items += [f"guardrail: {g.subject} {g.before} → {g.after}" for g in self.guardrails if g.loosens]
        items += [f"monitoring: {m.subject} {m.before} → {m.after}" for m in self.monitoring if m.loosens]
        if self.approvers is not None and self.approvers[1] < self.approvers[0]:
            items.append(f"control: approvals a change needs drop from {self.approvers[0]} to {self.approvers[1]}")
        return items

    @property
    def violations(self) -> list[FlowChange]:
        return [flow for flow in self.flows if flow.change == "starts" and not flow.allowed]

    def as_dict(self) -> dict[str, Any]:
        return {"no_new_access": not self.widenings, "widenings": self.widenings,
                "access": [{"identity": c.identity, "alias": c.alias, "before": c.before, "after": c.after,
                            "widens": c.widens} for c in self.access],
                "rules": [asdict(r) for r in self.rules],
                "routes": [asdict(r) | {"description": r.description} for r in self.routes],
                "flows": [asdict(f) for f in self.flows],
                "deployments": [{"deployment": d.deployment, "changes": [list(c) for c in d.changes], "widens": d.widens,
                                 "added": d.added, "removed": d.removed, "description": d.description}
                                for d in self.deployments],
                "approvers": list(self.approvers) if self.approvers else None,
                "guardrails": [asdict(g) for g in self.guardrails],
                "monitoring": [asdict(m) for m in self.monitoring],
                "violations": [asdict(f) for f in self.violations],
                "shares": [s.as_dict() for s in self.shares],
                "failover": [f.as_dict() for f in self.failover]}


def _flows(document: PolicyDocument) -> dict[tuple[str, str], None]:
    """(deployment, data class) pairs by route membership: the classes granted on an alias may
    reach every deployment on its route, fallbacks included. What a deployment may ever receive
    (the violations are checked on it); who answers first is ``flows.lanes``."""
    flows: dict[tuple[str, str], None] = {}
    for grant in document.grants:
        level = rank(grant.max_data_class)
        for alias in grant.aliases:
            for deployment in document.aliases[alias].route:
                for data_class in DATA_CLASSES[: level + 1]:
                    flows[(deployment, data_class)] = None
    return flows


def plan(before: PolicyDocument, after: PolicyDocument, identities: Iterable[IdentityView]) -> Plan:
    result = Plan()
    rules = RuleDiff.of(before, after)
    for name, moves in access_moves(rules, identities):  # only identities the changed rules can reach
        result.access.extend(AccessChange(name, alias, was, now) for alias, was, now in moves)
    added, removed = rules.texts()
    result.rules = ([RuleChange(who, alias, data_class, "added") for who, alias, data_class in added]
                    + [RuleChange(who, alias, data_class, "removed") for who, alias, data_class in removed])
    for alias in sorted(before.aliases.keys() | after.aliases.keys()):
        old_route = before.aliases[alias].route if alias in before.aliases else None
        new_route = after.aliases[alias].route if alias in after.aliases else None
        if old_route != new_route:
            granted = any(alias in grant.aliases for grant in after.grants)
            result.routes.append(RouteChange(alias, old_route, new_route, granted))
    old_flows, new_flows = _flows(before), _flows(after)
    for (deployment, data_class), change in ([(key, "starts") for key in new_flows if key not in old_flows]
                                             + [(key, "stops") for key in old_flows if key not in new_flows]):
        spec = (after if change == "starts" else before).deployments[deployment]
        result.flows.append(FlowChange(deployment, data_class, change, spec.location, data_class in spec.data_classes))
    result.flows.sort(key=lambda f: (f.deployment, rank(f.data_class), f.change))
    result.shares = share_changes(before, after)
    result.failover = failover_changes(before, after)
    for name in sorted(before.deployments.keys() | after.deployments.keys()):
        old_spec = before.deployments[name].model_dump(mode="json") if name in before.deployments else None
        new_spec = after.deployments[name].model_dump(mode="json") if name in after.deployments else None
        if old_spec is None or new_spec is None:  # added or removed: where its data would go, and with what secret
            shown = new_spec if new_spec is not None else old_spec
            assert shown is not None  # the name comes from one of the two documents
            changes = tuple((key, "-", _shown(shown[key], key)) if new_spec is not None else (key, _shown(shown[key], key), "-")
                            for key in SENSITIVE_FIELDS if shown.get(key) is not None)
            result.deployments.append(DeploymentChange(name, changes, added=new_spec is not None, removed=new_spec is None))
            continue
        changes = tuple((key, _shown(old_spec.get(key), key), _shown(new_spec.get(key), key))
                        for key in sorted(old_spec.keys() | new_spec.keys()) if old_spec.get(key) != new_spec.get(key))
        if changes:
            result.deployments.append(DeploymentChange(name, changes))
    result.guardrails = guardrail_changes(before, after) + request_rule_changes(before, after)
    result.monitoring = monitoring_changes(before, after)
    if before.change_control.approvers != after.change_control.approvers:
        result.approvers = (before.change_control.approvers, after.change_control.approvers)
    return result


def _url_host(url: str) -> str | None:
    """The host a URL connects to, where a reader could take something else for it: user
    information before an ``@`` (``http://onprem.corp@203.0.113.9/v1`` goes to 203.0.113.9)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    return host if "@" in parts.netloc and host else None


def _shown(value: object, key: str | None = None) -> str:
    if value is None:
        return "-"
    if key == "url" and isinstance(value, str) and (host := _url_host(value)) is not None:
        return f"{value} (host {host})"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items() if v is not None) or "-"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
