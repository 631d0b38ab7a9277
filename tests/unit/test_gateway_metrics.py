"""Metric labels stay bounded whatever callers send."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from gatehouse.core.decision import RequestRecord
from gatehouse.telemetry.gateway_metrics import GatewayMetrics
from gatehouse.telemetry.labels import OTHER, BoundedLabel


def _record(**changes) -> RequestRecord:
    fields = {"identity": "app", "alias": "chat", "deployment": "d1", "status": 200, "error_code": None,
              "data_class": "internal", "fallbacks": [], "guardrails": None, "stream": False, "prompt_tokens": 5,
              "completion_tokens": 3, "latency_ms": 12.0, "ttft_ms": 12.0} | changes
    return RequestRecord("req_test", datetime.now(UTC), "chat/completions", "sha256:test", **fields)


def test_bounded_label_keeps_the_first_values_and_folds_the_rest():
    label = BoundedLabel(2)
    assert [label(v) for v in ("a", "b", "c", "a", None)] == ["a", "b", OTHER, "a", ""]


def test_identities_past_the_cap_share_one_series(monkeypatch):
    monkeypatch.setenv("GATEHOUSE_METRICS_MAX_IDENTITIES", "3")
    metrics = GatewayMetrics()
    for n in range(10):
        metrics.observe(_record(identity=f"cap-test-{n}", alias="cap-alias"))
    seen = {labels["gatehouse_identity"] for metric in REGISTRY.collect() if metric.name == "gatehouse_requests"
            for sample in metric.samples for labels in [sample.labels] if labels.get("gen_ai_request_model") == "cap-alias"}
    assert seen == {"cap-test-0", "cap-test-1", "cap-test-2", OTHER}


def test_fallbacks_tokens_and_per_token_time_are_counted():
    metrics = GatewayMetrics()
    metrics.observe(_record(alias="fb-alias", fallbacks=["down=connect", "busy=busy"], stream=True, ttft_ms=100.0,
                            latency_ms=1100.0, completion_tokens=11))
    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels)
    assert value("gatehouse_fallbacks_total", gen_ai_request_model="fb-alias", gatehouse_deployment="down",
                 gatehouse_reason="connect") == 1
    assert value("gatehouse_tokens_total", gatehouse_identity="app", gen_ai_request_model="fb-alias",
                 gen_ai_token_type="output") == 11
    assert value("gen_ai_server_time_per_output_token_seconds_sum", gen_ai_operation_name="chat",
                 gen_ai_request_model="fb-alias", gatehouse_deployment="d1") == 0.1


def test_a_model_the_policy_does_not_define_is_never_a_label():
    metrics = GatewayMetrics(defined=lambda alias: alias == "real-alias")
    metrics.observe(_record(alias="caller-typed-this", status=400, error_code="invalid_value"))
    metrics.observe(_record(alias="real-alias", identity="defined-test"))
    models = {sample.labels["gen_ai_request_model"] for metric in REGISTRY.collect() if metric.name == "gatehouse_requests"
              for sample in metric.samples}
    assert "caller-typed-this" not in models and {"_unknown", "real-alias"} <= models


def test_a_stream_the_client_left_is_not_a_success():
    metrics = GatewayMetrics()
    metrics.observe(_record(alias="left-alias", stream=True, error_code="client_disconnected", ttft_ms=5.0))
    assert REGISTRY.get_sample_value("gen_ai_server_time_to_first_token_seconds_count", {
        "gen_ai_operation_name": "chat", "gen_ai_request_model": "left-alias", "gatehouse_deployment": "d1"}) is None


def _identities(alias: str) -> set[str]:
    return {sample.labels["gatehouse_identity"] for metric in REGISTRY.collect()
            if metric.name in ("gatehouse_requests", "gatehouse_tokens") for sample in metric.samples
            if sample.labels.get("gen_ai_request_model") == alias}


def test_identity_label_none_names_no_identity():
    metrics = GatewayMetrics(identity_label="none")
    for name in ("label-none-a", "label-none-b"):
        metrics.observe(_record(identity=name, alias="label-none"))
        metrics.observe(_record(identity=name, alias="label-none", status=400, error_code="guardrail_blocked"))
    assert _identities("label-none") == {""}
    assert REGISTRY.get_sample_value("gatehouse_requests_total", {
        "gatehouse_identity": "", "gen_ai_request_model": "label-none", "code": "200", "error_type": ""}) == 2


def test_identity_label_team_names_the_team_never_the_identity():
    from gatehouse.telemetry.labels import NO_TEAM

    metrics = GatewayMetrics(identity_label="team")
    for team in ("payments", "payments", None):  # the request path puts the identity's team on the record
        record = _record(identity="label-team-secret-bot", alias="label-team")
        record.team = team
        metrics.observe(record)
    assert _identities("label-team") == {"payments", NO_TEAM}
    assert not any("secret-bot" in value for value in _identities("label-team"))


def test_an_unknown_identity_label_setting_is_refused():
    with pytest.raises(ValueError, match="name, team, none"):
        GatewayMetrics(identity_label="email")
