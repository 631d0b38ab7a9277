"""Prometheus metrics of the gateway, fed from each request's decision record.

Names follow the OpenTelemetry GenAI semantic conventions where one exists
(``gen_ai.server.request.duration`` → ``gen_ai_server_request_duration_seconds``, attribute
``gen_ai.request.model`` → label ``gen_ai_request_model``); Gatehouse's own dimensions
(identity, deployment, guardrail rule) are ``gatehouse_*``. Every label is bounded: aliases,
deployments and rules come from the policy, identities and error codes are capped
(:class:`BoundedLabel`), and a model name nobody defined is never a label value.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

from gatehouse.core.decision import RequestRecord
from gatehouse.telemetry.labels import IDENTITY_LABELS, OPERATION, BoundedLabel

# Bucket boundaries the conventions recommend for each instrument.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)

MODEL = ("gen_ai_operation_name", "gen_ai_request_model", "gatehouse_deployment")

REQUEST_DURATION = Histogram("gen_ai_server_request_duration_seconds",
                             "Time from request arrival to the last byte of the answer (or the error)",
                             [*MODEL, "error_type"], buckets=DURATION_BUCKETS)
TIME_TO_FIRST_TOKEN = Histogram("gen_ai_server_time_to_first_token_seconds",
                                "Time from arrival to the first streamed event, successful streams",
                                MODEL, buckets=TTFT_BUCKETS)
TIME_PER_OUTPUT_TOKEN = Histogram("gen_ai_server_time_per_output_token_seconds",
                                  "Time per output token after the first, successful streams", MODEL,
                                  buckets=TPOT_BUCKETS)
TOKEN_USAGE = Histogram("gen_ai_client_token_usage", "Input and output tokens per request, as the deployment counted them",
                        [*MODEL, "gen_ai_token_type"], buckets=TOKEN_BUCKETS)
REQUESTS = Counter("gatehouse_requests", "Requests answered, by identity, alias and HTTP status",
                   ["gatehouse_identity", "gen_ai_request_model", "code", "error_type"])
TOKENS = Counter("gatehouse_tokens", "Tokens by identity and alias (input and output)",
                 ["gatehouse_identity", "gen_ai_request_model", "gen_ai_token_type"])
VERDICTS = Counter("gatehouse_guardrail_verdicts", "Guardrail verdicts by rule and action (shadow verdicts enforce nothing)",
                   ["gen_ai_request_model", "gatehouse_rule", "gatehouse_action", "gatehouse_direction", "gatehouse_shadow"])
FALLBACKS = Counter("gatehouse_fallbacks", "Deployments that could not answer and handed the request on",
                    ["gen_ai_request_model", "gatehouse_deployment", "gatehouse_reason"])
DATA_CLASS = Counter("gatehouse_data_class_requests", "Requests by the data class they were routed as",
                     ["gen_ai_request_model", "gatehouse_data_class"])


def _limit(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


class GatewayMetrics:
    """Turns a finished request's decision record into metric samples.

    ``identity_label`` (``GATEHOUSE_METRICS_IDENTITY_LABEL``) is what ``gatehouse_identity``
    holds: the identity's ``name``, its ``team``, or ``none`` (one constant, ``""``, for every
    request: no identity can be told apart in the samples).
    """

    def __init__(self, defined: Callable[[str], bool] = lambda alias: True, identity_label: str = "name") -> None:
        if identity_label not in IDENTITY_LABELS:
            raise ValueError(f"identity_label must be one of {', '.join(IDENTITY_LABELS)}, not {identity_label!r}")
        self.defined = defined  # whether an alias exists in the enforced policy
        self.identity_of = IDENTITY_LABELS[identity_label]
        self.identity = BoundedLabel(_limit("GATEHOUSE_METRICS_MAX_IDENTITIES", 200))
        self.model = BoundedLabel(_limit("GATEHOUSE_METRICS_MAX_MODELS", 500))
        self.error = BoundedLabel(50)
        self.rule = BoundedLabel(500)
        self._children: dict[tuple, Any] = {}  # (metric, label values) → child: labels() costs ~2 µs a call

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, record: RequestRecord) -> None:
        operation = OPERATION.get(record.endpoint, record.endpoint)
        # A model nobody defined is the caller's free text: never a label.
        alias = record.alias
        model = self.model(alias) if alias is None or self.defined(alias) else "_unknown"
        deployment = record.deployment or ""
        error = self.error(record.error_code) if record.status >= 400 or record.error_code else ""
        identity = self.identity(self.identity_of(record))
        labels = (operation, model, deployment)

        self._child(REQUEST_DURATION, *labels, error).observe(record.latency_ms / 1000)
        self._child(REQUESTS, identity, model, str(record.status), error).inc()
        if record.data_class is not None:
            self._child(DATA_CLASS, model, record.data_class).inc()
        for attempt in record.fallbacks:
            failed, _, reason = attempt.partition("=")
            self._child(FALLBACKS, model, failed, reason).inc()
        for verdict in record.guardrails or ():
            self._child(VERDICTS, model, self.rule(verdict["rule"]), verdict["action"],
                            "output" if verdict.get("output") else "input", "true" if verdict["shadow"] else "false").inc()
        if record.status != 200 or record.error_code:  # e.g. a stream the client left: not a success
            return
        for kind, count in (("input", record.prompt_tokens), ("output", record.completion_tokens)):
            if count is not None:
                self._child(TOKEN_USAGE, *labels, kind).observe(count)
                self._child(TOKENS, identity, model, kind).inc(count)
        if record.stream and record.ttft_ms is not None:
            self._child(TIME_TO_FIRST_TOKEN, *labels).observe(record.ttft_ms / 1000)
            generated = record.completion_tokens or 0
            if generated > 1:
                self._child(TIME_PER_OUTPUT_TOKEN, *labels).observe(
                    (record.latency_ms - record.ttft_ms) / 1000 / (generated - 1))
