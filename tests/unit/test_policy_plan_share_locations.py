"""``first answers move from X to Y`` says where the first answers were: the old version's
location of the deployment that answered first, not the new version's (which the same change
may have relabelled); review r25."""

from __future__ import annotations

from test_policy_plan_flows import CLOUD, ONPREM, PolicyDocument, traffic


def document(route: list[str], **deployments: dict) -> PolicyDocument:
    return PolicyDocument.model_validate({
        "version": 1, "deployments": deployments, "aliases": {"chat": {"route": route}},
        "grants": [{"name": "dev-chat", "subjects": [{"environment": "dev"}], "aliases": ["chat"]}]})


def test_the_move_names_where_the_first_answers_were():
    other = {**ONPREM, "url": "http://onprem-b/v1"}
    before = document(["a", "b"], a=ONPREM, b=other)
    after = document(["b", "a"], a={**ONPREM, "location": "cloud"}, b=other)  # a relabelled and demoted
    [line] = [w for w in traffic(before, after) if w.startswith("traffic:")]
    assert "first answers move" not in line  # on-prem then, on-prem now
    after = document(["b", "a"], a=ONPREM, b={**CLOUD, "url": "http://onprem-b/v1"})
    [line] = [w for w in traffic(before, after) if w.startswith("traffic:")]
    assert line.endswith("first answers move from on-prem to cloud")
