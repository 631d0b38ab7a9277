"""The plan's data flow by traffic share (issue 25): per alias, data class and endpoint, which
deployment answers first and which only on failure. Promoting a fallback, dropping the primary,
or changing a setting that makes a deployment hand requests on are widenings; a property test
holds the plan to a brute-force reading of both routes."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.core.classification import DATA_CLASSES
from gatehouse.engines.base import ENDPOINTS
from gatehouse.engines.embedded import EmbeddedEngine
from gatehouse.engines.openai_upstream import OpenAIUpstream
from gatehouse.engines.serving import serves
from gatehouse.engines.spec import Deployment
from gatehouse.policy.plan import plan
from gatehouse.policy.schema import PolicyDocument

ONPREM = {"engine": "openai", "url": "http://onprem/v1", "model": "m", "location": "on-prem",
          "data_classes": list(DATA_CLASSES)}
CLOUD = {"engine": "openai", "url": "https://cloud/v1", "model": "m", "location": "cloud",
         "data_classes": ["public", "internal"]}
LOCAL = {"engine": "embedded", "model": "gemma-3-270m", "location": "on-prem", "data_classes": list(DATA_CLASSES)}


def document(route: list[str], *, max_class: str = "internal", granted: bool = True, **deployments: dict) -> PolicyDocument:
    """The issue's policy: ``chat`` routed over on-prem and cloud deployments, granted to dev."""
    grants = [{"name": "dev-chat", "subjects": [{"environment": "dev"}], "aliases": ["chat"],
               "max_data_class": max_class}] if granted else []
    return PolicyDocument.model_validate({
        "version": 1, "deployments": {"onprem": ONPREM, "cloud": CLOUD, "local": LOCAL, **deployments},
        "aliases": {"chat": {"route": route}}, "grants": grants})


BEFORE = document(["onprem", "cloud"])


def traffic(before: PolicyDocument, after: PolicyDocument) -> list[str]:
    return [w for w in plan(before, after, []).widenings if w.startswith(("traffic:", "failover:"))]


def test_promoting_the_fallback_is_a_widening_that_names_the_move_across_locations():
    result = plan(BEFORE, document(["cloud", "onprem"]), [])
    assert result.as_dict()["no_new_access"] is False
    assert result.widenings == ["traffic: chat public, internal → cloud (cloud) answers first; was tried after onprem; "
                                "first answers move from on-prem to cloud"]
    [share] = result.shares
    assert (share.before, share.after, share.promoted) == (("onprem", "cloud"), ("cloud", "onprem"), ("cloud",))
    assert share.description == "chat public, internal: onprem first, then cloud → cloud first, then onprem"


def test_dropping_the_primary_leaves_the_fallback_the_only_deployment():
    assert traffic(BEFORE, document(["cloud"])) == [
        "traffic: chat public, internal → cloud (cloud) is the only deployment; was tried after onprem; "
        "first answers move from on-prem to cloud"]


def test_dropping_or_demoting_without_promoting_anyone_is_no_widening():
    assert plan(BEFORE, document(["onprem"]), []).widenings == []  # the fallback goes: less data leaves
    assert [s.description for s in plan(BEFORE, document(["onprem"]), []).shares] == [
        "chat public, internal: onprem first, then cloud → onprem first"]
    assert traffic(document(["onprem", "cloud", "local"]), document(["onprem", "local", "cloud"])) == [
        "traffic: chat public, internal (chat/completions, completions) → local (on-prem) is tried after onprem; "
        "was tried after onprem, cloud"]  # local moves up; cloud, moved down, asks nothing


def test_a_tighter_timeout_can_hand_every_request_on_to_the_fallback():
    tight = document(["onprem", "cloud"], onprem={**ONPREM, "timeouts": {"first_token": 0.000001}})
    result = plan(BEFORE, tight, [])
    assert result.widenings == ["failover: onprem (on-prem) timeouts.first_token 60.0 → 1e-06 can hand chat requests "
                                "on to cloud (cloud) for public, internal"]
    assert [d.widens for d in result.deployments] == [False]  # the deployment change alone was not asked for
    assert result.shares == []  # the order is the same; how often the first fails is not
    assert result.as_dict()["failover"] == [{
        "deployment": "onprem", "location": "on-prem", "alias": "chat",
        "fields": [["timeouts.first_token", "60.0", "1e-06"]],
        "onto": [{"deployment": "cloud", "location": "cloud", "data_classes": ["public", "internal"]}], "widens": True}]


def test_which_handover_settings_count():
    def failover(before: dict, after: dict, route: tuple[str, ...] = ("local", "cloud")) -> list[str]:
        return traffic(document(list(route), local={**LOCAL, **before}), document(list(route), local={**LOCAL, **after}))

    assert failover({}, {"timeouts": {"first_token": 120, "connect": 10, "read": 300}}) == []  # waits longer: keeps more
    assert failover({}, {"settings": {"max_waiting": 500}}) == []                            # queues more: keeps more
    assert failover({}, {"settings": {}}) == []                                               # the defaults, spelt out
    assert failover({}, {"settings": {"max_waiting": 1}}) == [
        "failover: local (on-prem) settings.max_waiting 64 → 1 can hand chat requests on to cloud (cloud) for public, "
        "internal"]
    for setting in ({"slots": 2}, {"slots": 16, "batch_size": 1024}, {"threads": 2}, {"prefill_chunk": 16}):
        assert len(failover({}, {"settings": setting})) == 1, setting  # capacity either way: speed, memory, queueing
    assert failover({}, {"timeouts": {"connect": 1}}, route=("cloud", "local")) == []  # last on the route: nobody after
    assert failover({}, {"timeouts": {"connect": 1}}, route=("local",)) == []


def test_data_class_filtering_decides_who_answers_first():
    # cloud may not receive confidential data: those requests skip it whatever the route says
    before = document(["cloud", "onprem"], max_class="confidential")
    result = plan(before, document(["onprem", "cloud"], max_class="confidential"), [])
    assert [w for w in result.widenings if w.startswith("traffic:")] == [
        "traffic: chat public, internal → onprem (on-prem) answers first; was tried after cloud; "
        "first answers move from cloud to on-prem"]
    # narrowing the primary's classes moves internal requests to the cloud fallback
    narrowed = document(["onprem", "cloud"], onprem={**ONPREM, "data_classes": ["public"]})
    assert "traffic: chat internal → cloud (cloud) is the only deployment; was tried after onprem; first answers move " \
           "from on-prem to cloud" in plan(BEFORE, narrowed, []).widenings


def test_endpoint_filtering_decides_who_answers_first():
    # the embedded engine serves no embeddings: put first, it answers the other endpoints first,
    # and embeddings go to the deployment after it
    before = document(["cloud", "onprem"])
    after = document(["local", "onprem", "cloud"])
    widenings = traffic(before, after)
    assert widenings == [
        "traffic: chat public, internal (chat/completions, completions) → local (on-prem) answers first; was not tried; "
        "first answers move from cloud to on-prem",
        "traffic: chat public, internal (embeddings) → onprem (on-prem) answers first; was tried after cloud; "
        "first answers move from cloud to on-prem"]  # onprem keeps its place for the others: second


def test_requests_nobody_may_send_move_nothing():
    assert traffic(document(["onprem", "cloud"], granted=False), document(["cloud", "onprem"], granted=False)) == []
    assert plan(document(["onprem"], granted=False), document(["cloud"], granted=False), []).shares == []


def test_requests_new_to_an_alias_are_shown_and_asked_for_by_their_grant_rule():
    result = plan(BEFORE, document(["onprem", "cloud"], max_class="confidential"), [])
    assert [s.description for s in result.shares] == ["chat confidential: not taken → onprem first"]
    assert result.shares[0].promoted == ()
    assert "rule: environment=dev → chat at confidential" in result.widenings
    assert traffic(BEFORE, document(["onprem", "cloud"], max_class="confidential")) == []


def test_requests_refused_before_and_answered_now_are_a_widening():
    only_cloud = document(["cloud"], max_class="confidential")  # confidential requests: refused, nobody may take them
    result = plan(only_cloud, document(["cloud", "onprem"], max_class="confidential"), [])
    assert "traffic: chat confidential → onprem (on-prem) is the only deployment; no deployment took them" \
           in result.widenings
    assert [s.description for s in result.shares] == [
        "chat public, internal: cloud first → cloud first, then onprem",
        "chat confidential: refused: no deployment may receive them → onprem first"]


def test_the_plan_dict_carries_the_shares_and_stays_json():
    body = plan(BEFORE, document(["cloud", "onprem"]), []).as_dict()
    assert body["shares"][0]["first"] == "cloud" and body["shares"][0]["promoted"] == ["cloud"]
    assert body["shares"][0]["locations"] == {"cloud": "cloud", "onprem": "on-prem"}
    mine = {"shares": body["shares"], "failover": body["failover"]}
    assert orjson.loads(orjson.dumps(mine)) == mine  # plain JSON: lists, not tuples


def test_the_plan_and_the_engines_agree_on_which_endpoints_each_engine_serves():
    """The plan's lanes skip what the router skips: the embedded engine embeds nothing, an
    upstream of any kind is asked every endpoint."""
    embedded = object.__new__(EmbeddedEngine)
    assert [endpoint for endpoint in ENDPOINTS if EmbeddedEngine.supports(embedded, endpoint)] == [
        endpoint for endpoint in ENDPOINTS if serves("embedded", endpoint)] == ["chat/completions", "completions"]
    for kind in ("openai", "vllm", "sglang", "llama-server", "ollama", "tgi"):
        upstream = OpenAIUpstream("u", Deployment(engine=kind, url="http://127.0.0.1:9/v1", model="m"), None)
        assert all(upstream.supports(endpoint) and serves(kind, endpoint) for endpoint in ENDPOINTS)


# The property: for random routes, deployment classes, grants and timeouts on both sides, the
# plan's widenings name every deployment that moved towards the front of a lane that existed
# before, nothing else, and every deployment that can now hand requests on sooner.

KINDS = {"onprem": ("openai", "on-prem"), "cloud": ("openai", "cloud"), "local": ("embedded", "on-prem"),
         "edge": ("vllm", "cloud")}
ALIASES = ("a1", "a2", "a3")


@st.composite
def policies(draw, grants: dict[str, str]) -> PolicyDocument:  # type: ignore[no-untyped-def]
    deployments = {}
    for name, (engine, location) in KINDS.items():
        spec = {"engine": engine, "model": "m", "location": location,
                "data_classes": draw(st.lists(st.sampled_from(DATA_CLASSES), min_size=1, max_size=4, unique=True)),
                "timeouts": {"first_token": draw(st.sampled_from([1, 30, 60]))}}
        deployments[name] = spec | ({"url": f"http://{name}/v1"} if engine != "embedded" else {})
    return PolicyDocument.model_validate({
        "version": 1, "deployments": deployments,
        "aliases": {alias: {"route": draw(st.permutations(list(KINDS)).flatmap(
            lambda order: st.integers(1, len(order)).map(lambda n, order=order: order[:n])))} for alias in ALIASES},
        "grants": [{"name": f"g-{alias}", "subjects": [{"team": "t"}], "aliases": [alias], "max_data_class": level}
                   for alias, level in grants.items()]})


def order(document: PolicyDocument, alias: str, data_class: str, endpoint: str) -> list[str]:
    """Written apart from the code under test: what the gateway and the router would try."""
    tried = []
    for name in document.aliases[alias].route:
        spec = document.deployments[name]
        if data_class not in spec.data_classes:
            continue  # api.inference skips it
        if endpoint == "embeddings" and spec.engine == "embedded":
            continue  # the router finds it unsupported
        tried.append(name)
    return tried


@st.composite
def changes(draw):  # type: ignore[no-untyped-def]
    some_grants = st.dictionaries(st.sampled_from(ALIASES), st.sampled_from(DATA_CLASSES), max_size=3)
    grants = draw(some_grants)
    return draw(policies(grants)), draw(policies(grants if draw(st.booleans()) else draw(some_grants)))


@settings(max_examples=150, deadline=None)
@given(pair=changes())
def test_every_move_towards_the_front_is_a_widening_and_nothing_else_is(pair):
    before, after = pair
    result = plan(before, after, [])
    widenings = set(result.widenings)
    flagged = {(s.alias, c, e, d) for s in result.shares for d in s.promoted for c in s.data_classes for e in s.endpoints}
    for s in result.shares:
        assert all(s.widening(d) in widenings for d in s.promoted)
    moved = set()
    for alias in ALIASES:
        granted = [g for g in before.grants if alias in g.aliases]
        if not granted:
            continue
        for data_class in DATA_CLASSES[: DATA_CLASSES.index(granted[0].max_data_class) + 1]:
            if not any(alias in g.aliases and DATA_CLASSES.index(g.max_data_class) >= DATA_CLASSES.index(data_class)
                       for g in after.grants):
                continue  # the alias no longer takes these requests
            for endpoint in ENDPOINTS:
                old, new = order(before, alias, data_class, endpoint), order(after, alias, data_class, endpoint)
                for index, name in enumerate(new):
                    if name not in old or index < old.index(name):
                        moved.add((alias, data_class, endpoint, name))
    assert flagged == moved
    # a deployment that now gives up sooner can hand its requests to every one after it
    for name in KINDS:
        sooner = after.deployments[name].timeouts.first_token < before.deployments[name].timeouts.first_token
        expected = set()
        for grant in after.grants if sooner else ():
            [alias] = grant.aliases
            for data_class in DATA_CLASSES[: DATA_CLASSES.index(grant.max_data_class) + 1]:
                for endpoint in ENDPOINTS:
                    tried = order(after, alias, data_class, endpoint)
                    if name in tried:
                        expected |= {(alias, later, data_class) for later in tried[tried.index(name) + 1:]}
        got = {(f.alias, later, data_class) for f in result.failover if f.deployment == name
               for later, _, classes in f.onto for data_class in classes}
        assert got == expected
    assert all(f.widening in widenings for f in result.failover)
