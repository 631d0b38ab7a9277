"""OpenTelemetry traces of the request path, exported over OTLP/HTTP (ADR 0011).

Configured by the standard variables: tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` / ``OTEL_TRACES_EXPORTER=none``
do not turn it off); ``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``
and ``OTEL_BSP_*`` mean what they mean everywhere. An incoming W3C ``traceparent`` makes the
gateway's span a child of the caller's.

The request path only notes instants (``perf_counter``, tens of nanoseconds each); the spans are
built from them once the request has ended, with their real start and end times, so a trace
costs the hot path one ``start_span`` and nothing while tracing is off. Spans carry names,
identities, rules and counts, never prompt or completion text.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from gatehouse.core.decision import RequestRecord
from gatehouse.telemetry.labels import OPERATION

log = logging.getLogger("gatehouse.tracing")


def enabled_by_environment() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


# The W3C traceparent an upstream call carries: the request's server span. A context variable,
# so each request's task has its own and no engine signature changes.
UPSTREAM_TRACEPARENT: ContextVar[str | None] = ContextVar("gatehouse_upstream_traceparent", default=None)


class NullTrace:
    """What a request carries while tracing is off: every call does nothing."""

    def mark(self, name: str) -> None:
        pass

    def tried(self, attempts: list[Any]) -> None:
        pass

    def finish(self, record: RequestRecord) -> None:
        pass


NULL_TRACE = NullTrace()


class RequestTrace:
    """The instants of one request, turned into spans when it ends."""

    __slots__ = ("_tracing", "_root", "_started", "_wall_ns", "marks", "attempts")

    def __init__(self, tracing: Tracing, root: Any, started: float, wall_ns: int) -> None:
        self._tracing = tracing
        self._root = root
        self._started = started
        self._wall_ns = wall_ns
        self.marks: dict[str, float] = {}
        self.attempts: list[Any] = []  # routing.router.Attempt, with their instants

    def mark(self, name: str) -> None:
        self.marks[name] = time.perf_counter()

    def tried(self, attempts: list[Any]) -> None:
        self.attempts = attempts

    def traceparent(self) -> str:
        context = self._root.get_span_context()
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    def _ns(self, instant: float) -> int:
        return self._wall_ns + int((instant - self._started) * 1e9)

    def finish(self, record: RequestRecord) -> None:
        try:
            self._tracing.build(self, record)
        except Exception as exc:  # a trace must never cost a request its record
            log.error("could not build the trace of %s: %s", record.request_id, type(exc).__name__)


class Tracing:
    def __init__(self, worker: str, defined: Callable[[str], bool] = lambda alias: True) -> None:
        self.defined = defined  # whether an alias exists in the enforced policy: caller text never names a span
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "gatehouse",
                                    "service.instance.id": worker})
        self.provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.provider.get_tracer("gatehouse")
        self._propagator = TraceContextTextMapPropagator()
        self._trace = trace
        self._kind = trace.SpanKind

    def begin(self, headers: Any, endpoint: str, started: float) -> RequestTrace | NullTrace:
        parent = self._propagator.extract(headers) if "traceparent" in headers else None
        wall_ns = time.time_ns() - int((time.perf_counter() - started) * 1e9)  # when the request arrived
        root = self.tracer.start_span(OPERATION.get(endpoint, endpoint), context=parent, kind=self._kind.SERVER,
                                      start_time=wall_ns)
        if not root.is_recording():  # sampled out
            root.end()
            return NULL_TRACE
        return RequestTrace(self, root, started, wall_ns)

    def build(self, trace: RequestTrace, record: RequestRecord) -> None:
        try:
            self._build(trace, record)
        finally:
            trace._root.end(end_time=trace._ns(trace._started + record.latency_ms / 1000))  # ends once: later calls are ignored

    def _build(self, trace: RequestTrace, record: RequestRecord) -> None:
        root, marks = trace._root, trace.marks
        operation = OPERATION.get(record.endpoint, record.endpoint)
        alias = record.alias if record.alias is None or self.defined(record.alias) else "_unknown"
        context = self._trace.set_span_in_context(root)
        ended = trace._started + record.latency_ms / 1000

        def child(name: str, start: float, end: float, attributes: dict[str, Any], kind: Any = None) -> Any:
            span = self.tracer.start_span(name, context=context, kind=kind or self._kind.INTERNAL,
                                          attributes={k: v for k, v in attributes.items() if v is not None},
                                          start_time=trace._ns(start))
            span.end(end_time=trace._ns(max(start, end)))
            return span

        if "authenticated" in marks:
            child("gatehouse.authenticate", trace._started, marks["authenticated"],
                  {"gatehouse.identity": record.identity, "gatehouse.key_id": record.key_id})
        if "authorized" in marks:
            child("gatehouse.authorize", marks.get("validated", marks["authenticated"]), marks["authorized"],
                  {"gen_ai.request.model": alias, "gatehouse.policy_version": record.policy_version})
        verdicts = record.guardrails or []
        if "guarded" in marks or (record.error_code in GUARD_ERRORS and "authorized" in marks):
            child("gatehouse.guardrails", marks["authorized"], marks.get("guarded", ended), {
                "gatehouse.data_class": record.data_class, "gatehouse.guardrail.verdicts": len(verdicts),
                "gatehouse.guardrail.rules": sorted({v["rule"] for v in verdicts if not v.get("output")}) or None,
                "gatehouse.guardrail.blocked": record.error_code == "guardrail_blocked"})
        if "dispatched" in marks:
            answered = marks.get("answered", ended)
            child("gatehouse.route", marks["dispatched"], answered, {
                "gen_ai.request.model": alias, "gatehouse.deployment": record.deployment,
                "gatehouse.fallbacks": len(record.fallbacks)})
            previous = marks["dispatched"]
            for attempt in trace.attempts:
                child(f"{operation} {attempt.deployment}", attempt.started, attempt.ended, {
                    "gen_ai.operation.name": operation, "gatehouse.deployment": attempt.deployment,
                    "error.type": attempt.reason}, self._kind.CLIENT)
                previous = attempt.ended
            if record.deployment:  # the deployment that answered, until the last byte of its answer
                child(f"{operation} {record.deployment}", previous, ended, {
                    "gen_ai.operation.name": operation, "gatehouse.deployment": record.deployment,
                    "gen_ai.usage.input_tokens": record.prompt_tokens,
                    "gen_ai.usage.output_tokens": record.completion_tokens}, self._kind.CLIENT)
        attributes = {
            "gen_ai.operation.name": operation, "gen_ai.request.model": alias,
            "gen_ai.usage.input_tokens": record.prompt_tokens, "gen_ai.usage.output_tokens": record.completion_tokens,
            "http.response.status_code": record.status, "error.type": record.error_code,
            "gatehouse.request_id": record.request_id, "gatehouse.identity": record.identity,
            "gatehouse.deployment": record.deployment, "gatehouse.policy_version": record.policy_version,
            "gatehouse.data_class": record.data_class, "gatehouse.stream": record.stream}
        root.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if alias:
            root.update_name(f"{operation} {alias}")
        if record.status >= 400 or record.error_code:
            root.set_status(self._trace.Status(self._trace.StatusCode.ERROR, record.error_code or ""))

    def shutdown(self) -> None:
        self.provider.shutdown()  # exports what is still queued


GUARD_ERRORS = frozenset({"guardrail_blocked", "guardrail_unscannable", "guardrail_unmeasurable", "tokenizer_unavailable",
                          "invalid_data_class", "data_class_not_cleared", "data_class_not_granted", "data_class_not_allowed"})


def finish_trace(record: RequestRecord) -> None:
    """A decision-record observer: the record's trace becomes spans, and the record lets go of it
    (``trace`` is never stored)."""
    trace, record.trace = record.trace, None
    (trace or NULL_TRACE).finish(record)
