import asyncio

import pytest

from gatehouse.engines.base import EngineBusy, EngineFailure, EngineReply, UpstreamRejected
from gatehouse.routing.router import NoDeploymentAnswered, dispatch


class FakeEngine:
    def __init__(self, name, outcome, endpoints=("chat/completions",)):
        self.name, self.outcome, self.endpoints, self.calls = name, outcome, endpoints, []

    def supports(self, endpoint):
        return endpoint in self.endpoints

    async def call(self, endpoint, body, stream, caller="", request_id=""):
        self.calls.append((endpoint, caller))
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def run(route, engines, endpoint="chat/completions"):
    return asyncio.run(dispatch(route, {e.name: e for e in engines}, endpoint, {}, False, "caller-1"))


def test_first_healthy_deployment_answers_and_earlier_failures_are_listed():
    ok = FakeEngine("c", EngineReply(body={"ok": True}))
    name, reply, attempts = run(["a", "b", "c"], [FakeEngine("a", EngineFailure("http_503")),
                                                  FakeEngine("b", EngineFailure("timeout")), ok])
    assert name == "c" and reply.body == {"ok": True}
    assert [str(a) for a in attempts] == ["a=http_503", "b=timeout"]
    assert ok.calls == [("chat/completions", "caller-1")]


def test_a_request_the_deployment_rejects_is_not_retried_elsewhere():
    second = FakeEngine("b", EngineReply(body={}))
    with pytest.raises(UpstreamRejected):
        run(["a", "b"], [FakeEngine("a", UpstreamRejected(400, "bad")), second])
    assert second.calls == []


@pytest.mark.parametrize("outcomes, status", [
    ([EngineBusy(), EngineBusy()], 429),
    ([EngineFailure("connect"), EngineFailure("timeout")], 504),
    ([EngineFailure("connect"), EngineFailure("shutting_down")], 503),
    ([EngineFailure("http_500"), EngineFailure("connect")], 502),
    ([EngineBusy(), EngineFailure("bad_response")], 502),
])
def test_status_when_nobody_answers(outcomes, status):
    engines = [FakeEngine(f"d{i}", outcome) for i, outcome in enumerate(outcomes)]
    with pytest.raises(NoDeploymentAnswered) as info:
        run([e.name for e in engines], engines)
    assert info.value.status == status


def test_deployments_without_the_endpoint_are_skipped():
    embedded = FakeEngine("embedded", EngineReply(body={}), endpoints=("chat/completions",))
    with pytest.raises(NoDeploymentAnswered) as info:
        run(["embedded"], [embedded], endpoint="embeddings")
    assert info.value.status == 400 and embedded.calls == []
