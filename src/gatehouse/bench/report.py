"""Turns a run's outcomes into the report: aggregates, per tenant, over time, against load."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import orjson

from gatehouse.bench.arrivals import Phase
from gatehouse.bench.runner import Outcome, RunResult
from gatehouse.bench.stats import distribution, fairness, percentile

REPORT_FORMAT = 1


def _values(outcomes: list[Outcome], name: str) -> list[float]:
    return [value for outcome in outcomes if (value := getattr(outcome, name)) is not None]


def meets_slo(outcome: Outcome, slo: dict[str, float | None]) -> bool:
    """A failed request never meets it; a one-token answer has no inter-token gap to miss."""
    if outcome.error is not None:
        return False
    for name, limit in slo.items():
        if limit is None:
            continue
        value = getattr(outcome, name)
        if value is None and name == "itl_ms":
            continue
        if value is None or value > limit:
            return False
    return True


def error_kind(outcome: Outcome) -> str:
    error = outcome.error or ""
    return error.split(":", 1)[0] if error.startswith("connect") else error


def _tenant_rows(result: RunResult, warm: list[Outcome], duration: float) -> tuple[list[dict[str, Any]], float | None]:
    by_tenant: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in result.outcomes:
        by_tenant[outcome.tenant].append(outcome)
    names = [plan.tenant.name for plan in result.plans]
    achieved = [sum(1 for o in by_tenant[name] if o.error is None) / duration for name in names]
    demands = [len(by_tenant[name]) / duration for name in names]
    weights = [plan.tenant.weight for plan in result.plans]
    index, normalised = fairness(achieved, demands, weights) if len(names) > 1 else (None, [None] * len(names))
    warm_by_tenant: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in warm:
        warm_by_tenant[outcome.tenant].append(outcome)
    rows = []
    for name, plan, share, rate in zip(names, result.plans, normalised, achieved, strict=True):
        mine = by_tenant[name]
        rows.append({
            "name": name, "requests": len(mine), "ok": sum(1 for o in mine if o.error is None),
            "errors": sum(1 for o in mine if o.error is not None),
            "rate_limited": sum(1 for o in mine if o.status == 429),
            "throughput_rps": rate, "output_tokens_per_s": sum(_values(mine, "output_tokens")) / duration,
            "weight": plan.tenant.weight, "normalised_share": share,
            "ttft_ms": distribution(_values(warm_by_tenant[name], "ttft_ms")),
            "e2e_ms": distribution(_values(warm_by_tenant[name], "e2e_ms")),
        })
    return rows, index


def _timeline(outcomes: list[Outcome], duration: float) -> list[dict[str, Any]]:
    seconds = max(1, math.ceil(duration))
    sent = [0] * seconds
    done: list[list[Outcome]] = [[] for _ in range(seconds)]
    for outcome in outcomes:
        sent[min(int(outcome.start_s), seconds - 1)] += 1
        if outcome.end_s is not None:
            done[min(int(outcome.end_s), seconds - 1)].append(outcome)
    rows = []
    for second in range(seconds):
        finished = done[second]
        ok = [o for o in finished if o.error is None]
        rows.append({"t": second, "sent": sent[second], "completed": len(finished), "ok": len(ok),
                     "errors": len(finished) - len(ok), "output_tokens": sum(_values(ok, "output_tokens")),
                     "e2e_p50_ms": percentile(_values(ok, "e2e_ms"), 50),
                     "e2e_p99_ms": percentile(_values(ok, "e2e_ms"), 99),
                     "ttft_p50_ms": percentile(_values(ok, "ttft_ms"), 50)})
    return rows


def _windows(phase: Phase) -> list[tuple[str, float, float]]:
    """A ramp is cut in ten windows so that throughput can be read against the rising load."""
    if phase.duration is None or phase.duration <= 0:
        return []
    if phase.kind == "ramp":
        step = phase.duration / 10
        return [(f"ramp {i + 1}/10", phase.start + i * step, phase.start + (i + 1) * step) for i in range(10)]
    return [(phase.label, phase.start, phase.start + phase.duration)]


def _load_curve(result: RunResult) -> list[dict[str, Any]]:
    windows: dict[tuple[float, float], str] = {}
    for plan in result.plans:
        for phase in plan.phases:
            for label, start, end in _windows(phase):
                windows.setdefault((start, end), label)
    rows = []
    for (start, end), label in sorted(windows.items()):
        length = end - start
        inside = [o for o in result.outcomes if start <= o.start_s < end]
        ok = [o for o in inside if o.error is None]
        rows.append({"label": label, "offered_rps": len(inside) / length, "achieved_rps": len(ok) / length,
                     "e2e_p50_ms": percentile(_values(ok, "e2e_ms"), 50),
                     "e2e_p99_ms": percentile(_values(ok, "e2e_ms"), 99)})
    return rows


def build_report(result: RunResult) -> dict[str, Any]:
    outcomes = result.outcomes
    duration = max(result.duration_s, 1e-9)
    warm = [o for o in outcomes if not o.cold]
    warm_ok = [o for o in warm if o.error is None]
    ok = [o for o in outcomes if o.error is None]
    scenario = result.scenario
    slo = None
    good = None
    if scenario.slo is not None:
        limits = {"ttft_ms": scenario.slo.ttft, "itl_ms": scenario.slo.itl, "e2e_ms": scenario.slo.e2e}
        slo = {name: None if value is None else value * 1000 for name, value in limits.items()}
        good = sum(1 for o in outcomes if meets_slo(o, slo))
    cold_ones = [o for o in outcomes if o.cold]
    cold = cold_ones[0] if cold_ones else None
    tenants, jain = _tenant_rows(result, warm, duration)
    count = len(outcomes)
    summary = {
        "requests": count, "ok": len(ok), "errors": count - len(ok),
        "rate_limited": sum(1 for o in outcomes if o.status == 429),
        "error_rate": (count - len(ok)) / count if count else 0.0,
        "rate_limited_rate": sum(1 for o in outcomes if o.status == 429) / count if count else 0.0,
        "fallback_rate": sum(1 for o in outcomes if o.fallbacks not in (None, "none")) / count if count else 0.0,
        "throughput_rps": len(ok) / duration,
        "output_tokens_per_s": sum(_values(ok, "output_tokens")) / duration,
        "goodput_rps": None if good is None else good / duration,
        "goodput_share": None if good is None or not count else good / count,
        "ttft_ms": distribution(_values(warm_ok, "ttft_ms")),
        "itl_ms": distribution(list(result.itl_gaps_ms)),
        "e2e_ms": distribution(_values(warm_ok, "e2e_ms")),
        "added_ms_mock": distribution(_values(warm_ok, "added_ms_mock")),
        "added_ms_header": distribution(_values(warm_ok, "added_ms_header")),
        "send_lag_ms": distribution(_values(outcomes, "lag_ms")),
        "jain_fairness": jain,
        "cold": None if cold is None else {
            "count": len(cold_ones), "ttft_ms": cold.ttft_ms, "e2e_ms": cold.e2e_ms, "status": cold.status,
            "ttft_ms_dist": distribution(_values(cold_ones, "ttft_ms")),
            "e2e_ms_dist": distribution(_values(cold_ones, "e2e_ms"))},
        "errors_by_kind": dict(Counter(error_kind(o) for o in outcomes if o.error is not None).most_common()),
    }
    return {
        "gatehouse_bench": REPORT_FORMAT,
        "scenario": scenario.model_dump(mode="json", by_alias=True),
        "target": result.target,
        "started_at": result.started_at.isoformat(),
        "duration_s": result.duration_s,
        "slo": slo,
        "notes": result.notes,
        "summary": summary,
        "tenants": tenants,
        "timeline": _timeline(outcomes, result.duration_s),
        "load_curve": _load_curve(result),
        "requests": [{name: getattr(o, name) for name in Outcome.__slots__} for o in outcomes],
    }


def report_json(report: dict[str, Any]) -> bytes:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2)
