"""The load generator's statistics, against synthetic timings with known answers."""

from __future__ import annotations

import math
from array import array
from datetime import UTC, datetime

import pytest

from gatehouse.bench.arrivals import Phase
from gatehouse.bench.report import build_report, meets_slo
from gatehouse.bench.runner import Outcome, RunResult, TenantPlan, server_timing
from gatehouse.bench.scenario import ClosedLoop, Scenario, Slo, Tenant
from gatehouse.bench.stats import distribution, fairness, jain_index, max_min_fair, percentile


def test_percentiles_of_one_to_a_hundred():
    values = list(range(1, 101))
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    dist = distribution(values)
    assert dist == {"count": 100, "mean": 50.5, "min": 1, "max": 100, "p50": pytest.approx(50.5),
                    "p90": pytest.approx(90.1), "p95": pytest.approx(95.05), "p99": pytest.approx(99.01),
                    "p99_9": pytest.approx(99.901)}


def test_distribution_of_nothing_and_of_one_value():
    assert distribution([]) is None
    assert distribution([7.0])["p99_9"] == 7.0


def test_jain_index_known_values():
    assert jain_index([3, 3, 3, 3]) == pytest.approx(1.0)
    assert jain_index([1, 0, 0, 0]) == pytest.approx(0.25)
    assert jain_index([1, 2]) == pytest.approx(9 / 10)
    assert jain_index([]) is None
    assert jain_index([0, 0]) is None


def test_max_min_fair_water_filling():
    # Capacity 9 among demands 10, 1, 5: the modest tenant gets its 1, the other two split 8.
    assert max_min_fair([10, 1, 5], [1, 1, 1], 9) == pytest.approx([4, 1, 4])
    # Weights 2:1 split what is left 2:1.
    assert max_min_fair([10, 10], [2, 1], 9) == pytest.approx([6, 3])
    # Enough for everyone: each gets its demand.
    assert max_min_fair([1, 2], [1, 1], 100) == pytest.approx([1, 2])


def test_fairness_is_one_when_each_gets_its_fair_share_even_if_demands_differ():
    index, normalised = fairness(achieved=[4, 1, 4], demands=[10, 1, 5], weights=[1, 1, 1])
    assert index == pytest.approx(1.0)
    assert normalised == pytest.approx([1, 1, 1])
    # A noisy neighbour that takes the quiet tenant's share is unfair.
    index, normalised = fairness(achieved=[8.5, 0.5], demands=[10, 1], weights=[1, 1])
    assert normalised == pytest.approx([8.5 / 8, 0.5 / 1])
    assert index == pytest.approx((1.0625 + 0.5) ** 2 / (2 * (1.0625 ** 2 + 0.5 ** 2)))  # 0.885


def test_server_timing_header():
    assert server_timing("gatehouse;dur=0.412, upstream;dur=12.5") == {"gatehouse": 0.412, "upstream": 12.5}
    assert server_timing('cache;desc="hit";dur=2, junk, x;dur=oops') == {"cache": 2.0}
    assert server_timing(None) == {}


def _outcome(i, tenant, start, end, *, ttft=None, status=200, error=None, tokens=10, itl=None, cold=False):
    return Outcome(i=i, tenant=tenant, phase="closed", start_s=start, lag_ms=0.0, status=status, error=error,
                   ttft_ms=ttft, e2e_ms=(end - start) * 1000, itl_ms=itl, end_s=end, output_tokens=tokens, cold=cold)


def _result(outcomes, slo=None, tenants=("a",), duration=4.0, gaps=()):
    scenario = Scenario(name="synthetic", model="m", duration=duration, arrival=ClosedLoop(kind="closed", concurrency=1),
                        slo=slo, tenants=[Tenant(name=name) for name in tenants] if len(tenants) > 1 else [])
    plans = [TenantPlan(Tenant(name=name), "k", "m", [Phase("closed", 0.0, duration, concurrency=1)]) for name in tenants]
    return RunResult(scenario, "http://target", datetime.now(UTC), duration, outcomes, array("d", gaps), plans)


def test_report_aggregates_known_timings():
    # Four seconds; ten requests: the first cold, two failures (a 429 and a 500), e2e 100..700 ms.
    outcomes = [_outcome(0, "a", 0.0, 0.9, ttft=900, cold=True)]
    for i in range(1, 8):
        outcomes.append(_outcome(i, "a", i * 0.4, i * 0.4 + i / 10, ttft=i * 10.0, itl=5.0))
    outcomes.append(_outcome(8, "a", 3.3, 3.35, status=429, error="http_429", tokens=None))
    outcomes.append(_outcome(9, "a", 3.5, 3.6, status=500, error="http_500", tokens=None))
    slo = Slo(ttft=0.045, e2e=0.5)
    report = build_report(_result(outcomes, slo=slo, gaps=[1.0, 2.0, 3.0, 4.0]))
    summary = report["summary"]
    assert summary["requests"] == 10 and summary["ok"] == 8 and summary["errors"] == 2
    assert summary["rate_limited"] == 1 and summary["rate_limited_rate"] == pytest.approx(0.1)
    assert summary["error_rate"] == pytest.approx(0.2)
    assert summary["throughput_rps"] == pytest.approx(8 / 4)
    assert summary["output_tokens_per_s"] == pytest.approx(80 / 4)
    # Warm e2e are 100..700 ms: the cold request is reported on its own.
    assert summary["e2e_ms"]["count"] == 7
    assert summary["e2e_ms"]["p50"] == pytest.approx(400)
    assert summary["e2e_ms"]["max"] == pytest.approx(700)
    cold = summary["cold"]
    assert (cold["count"], cold["ttft_ms"], cold["e2e_ms"], cold["status"]) == (1, 900, pytest.approx(900), 200)
    assert cold["e2e_ms_dist"]["p50"] == pytest.approx(900)
    assert summary["itl_ms"]["mean"] == pytest.approx(2.5)
    # Within the SLO: TTFT <= 45 ms and e2e <= 500 ms → requests 1..4.
    assert summary["goodput_rps"] == pytest.approx(4 / 4)
    assert summary["goodput_share"] == pytest.approx(0.4)
    assert summary["errors_by_kind"] == {"http_429": 1, "http_500": 1}
    timeline = report["timeline"]
    assert [row["sent"] for row in timeline] == [3, 2, 3, 2]
    assert sum(row["completed"] for row in timeline) == 10
    assert report["load_curve"] == [{"label": "closed", "offered_rps": 2.5, "achieved_rps": 2.0,
                                     "e2e_p50_ms": pytest.approx(450), "e2e_p99_ms": pytest.approx(886)}]


def test_report_per_tenant_shares_and_jain():
    outcomes = [_outcome(i, "noisy", i * 0.1, i * 0.1 + 0.05) for i in range(30)]
    outcomes += [_outcome(100 + i, "quiet", i * 1.0, i * 1.0 + 0.05) for i in range(3)]
    outcomes += [_outcome(200, "quiet", 3.5, 3.6, status=429, error="http_429")]
    report = build_report(_result(outcomes, tenants=("noisy", "quiet")))
    rows = {row["name"]: row for row in report["tenants"]}
    assert rows["noisy"]["throughput_rps"] == pytest.approx(30 / 4)
    assert rows["quiet"]["ok"] == 3 and rows["quiet"]["rate_limited"] == 1
    # Demands 7.5 and 1.0 req/s, capacity used 8.25: the quiet tenant's fair share is its whole demand.
    assert rows["quiet"]["normalised_share"] == pytest.approx(0.75)
    assert rows["noisy"]["normalised_share"] == pytest.approx(7.5 / 7.25)
    expected = (0.75 + 7.5 / 7.25) ** 2 / (2 * (0.75 ** 2 + (7.5 / 7.25) ** 2))
    assert report["summary"]["jain_fairness"] == pytest.approx(expected)


def test_meets_slo_needs_every_stated_limit():
    outcome = _outcome(0, "a", 0.0, 0.2, ttft=50.0, itl=20.0)
    assert meets_slo(outcome, {"ttft_ms": 60.0, "itl_ms": None, "e2e_ms": 250.0})
    assert not meets_slo(outcome, {"ttft_ms": 40.0, "itl_ms": None, "e2e_ms": None})
    assert not meets_slo(outcome, {"ttft_ms": None, "itl_ms": 10.0, "e2e_ms": None})
    failed = _outcome(1, "a", 0.0, 0.1, error="timeout")
    assert not meets_slo(failed, {"ttft_ms": None, "itl_ms": None, "e2e_ms": None})
    assert math.isfinite(outcome.e2e_ms)
