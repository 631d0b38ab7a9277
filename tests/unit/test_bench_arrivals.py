"""Arrival processes and length distributions: exact where the process is deterministic,
within tight bounds (fixed seeds) where it is random."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from gatehouse.bench.arrivals import TraceError, plan_phases, ramp_inverse
from gatehouse.bench.scenario import load_scenario_text
from gatehouse.bench.workload import Workload, length_sampler


def phases(text: str, base: Path = Path.cwd(), seed: int = 1):
    scenario = load_scenario_text("name: t\nmodel: m\n" + text, base=base)
    return plan_phases(scenario.arrival, scenario.duration, scenario.requests, random.Random(seed), base)


def test_constant_rate_is_evenly_spaced():
    [phase] = phases("duration: 2s\narrival: {kind: constant, rate: 4}\n")
    assert phase.times == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
    assert phase.kind == "constant"


@pytest.mark.parametrize("rate, duration, count", [(10, 1, 10), (7, 2, 14), (20, 3, 60), (3, 0.5, 2), (0.5, 3, 2)])
def test_constant_rate_never_sends_one_too_many(rate, duration, count):
    [phase] = phases(f"duration: {duration}\narrival: {{kind: constant, rate: {rate}}}\n")
    assert len(phase.times) == count and phase.times[-1] < duration


def test_a_schedule_too_large_to_hold_is_refused():
    from gatehouse.bench.arrivals import ScheduleTooLarge

    with pytest.raises(ScheduleTooLarge, match="more than 5,000,000 requests"):
        phases("duration: 1h\narrival: {kind: constant, rate: 1000000000}\n")


def test_request_budget_caps_an_open_loop():
    [phase] = phases("requests: 3\narrival: {kind: constant, rate: 100}\n")
    assert len(phase.times) == 3


def test_poisson_rate_and_exponential_gaps():
    [phase] = phases("duration: 200s\narrival: {kind: poisson, rate: 50}\n")
    gaps = [b - a for a, b in zip(phase.times, phase.times[1:], strict=False)]
    assert len(phase.times) / 200 == pytest.approx(50, rel=0.03)
    # An exponential distribution's coefficient of variation is 1.
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.05)


def test_gamma_burstiness_sets_the_coefficient_of_variation():
    [phase] = phases("duration: 200s\narrival: {kind: gamma, rate: 50, cv: 3}\n")
    gaps = [b - a for a, b in zip(phase.times, phase.times[1:], strict=False)]
    assert 1 / statistics.mean(gaps) == pytest.approx(50, rel=0.1)
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(3, rel=0.1)


def test_bursts_send_their_count_at_their_time():
    [phase] = phases("arrival: {kind: burst, bursts: [{at: 0s, count: 3}, {at: 500ms, count: 2}]}\n")
    assert phase.times == [0, 0, 0, 0.5, 0.5]


def test_linear_ramp_sends_the_area_under_the_rate():
    # 10 → 30 req/s over 4 s: 80 requests, and arrivals get denser.
    [phase] = phases("arrival: {kind: ramp, from: 10, to: 30, over: 4s}\n")
    assert len(phase.times) == 80
    first_second = sum(1 for t in phase.times if t < 1)
    last_second = sum(1 for t in phase.times if t >= 3)
    # Λ(t) = 10t + 2.5t²; arrivals where Λ = 0, 1, 2, …: Λ(1) = 12.5 → 13 of them; Λ(3) = 52.5 → 27 after.
    assert first_second == 13 and last_second == 27


def test_exponential_ramp_inverse_matches_the_closed_form():
    # rate(t) = 1·10^(t/2) over 2 s: Λ(T) = 2(10 - 1)/ln 10.
    area = 2 * 9 / __import__("math").log(10)
    assert ramp_inverse(1, 10, 2, "exponential", area) == pytest.approx(2.0)
    assert ramp_inverse(5, 5, 3, "linear", 10) == pytest.approx(2.0)


def test_stages_run_one_after_another():
    stages = phases("arrival:\n  kind: stages\n  stages:\n"
                    "    - {duration: 1s, arrival: {kind: constant, rate: 2}}\n"
                    "    - {duration: 2s, arrival: {kind: closed, concurrency: 3}, label: hold}\n"
                    "    - {duration: 1s, arrival: {kind: constant, rate: 4}}\n")
    assert [p.label for p in stages] == ["stage 1", "hold", "stage 3"]
    assert stages[0].times == [0, 0.5]
    assert stages[1].concurrency == 3 and stages[1].start == 1 and stages[1].end == 3
    assert stages[2].times == [3, 3.25, 3.5, 3.75]


def test_stages_are_cut_at_the_scenario_duration():
    stages = phases("duration: 1.5s\narrival:\n  kind: stages\n  stages:\n"
                    "    - {duration: 1s, arrival: {kind: constant, rate: 2}}\n"
                    "    - {duration: 5s, arrival: {kind: constant, rate: 2}}\n")
    assert [p.duration for p in stages] == [1, 0.5]


def test_replay_keeps_relative_times_and_per_request_lengths(tmp_path):
    (tmp_path / "trace.jsonl").write_text('{"t": 100.5, "prompt_tokens": 20}\n\n{"t": 100.0}\n'
                                          '{"t": 102.0, "output_tokens": 7}\n')
    [phase] = phases("arrival: {kind: replay, file: trace.jsonl, speed: 2}\n", base=tmp_path)
    assert phase.times == [0, 0.25, 1.0]
    assert phase.overrides == [None, {"prompt_tokens": 20}, {"output_tokens": 7}]


@pytest.mark.parametrize("line, message", [
    ("not json", "not JSON"),
    ('{"time": 1}', "needs a number t"),
    ('{"t": 1, "prompt": "x"}', "unknown fields"),
    ('{"t": 1, "prompt_tokens": 0}', "positive whole number"),
])
def test_bad_trace_lines_are_named(tmp_path, line, message):
    (tmp_path / "trace.jsonl").write_text('{"t": 0}\n' + line + "\n")
    with pytest.raises(TraceError, match=f"trace.jsonl:2: .*{message}"):
        phases("arrival: {kind: replay, file: trace.jsonl}\n", base=tmp_path)


def test_length_distributions_respect_their_bounds_and_shape(tmp_path):
    scenario = load_scenario_text(
        "name: t\nmodel: m\nrequests: 1\narrival: {kind: closed, concurrency: 1}\n"
        "prompt:\n  tokens: {kind: lognormal, median: 100, sigma: 0.6, min: 10, max: 400}\n"
        "output:\n  tokens: {kind: normal, mean: 50, stddev: 10, min: 30, max: 60}\n")
    rng = random.Random(3)
    prompt = [length_sampler(scenario.prompt.tokens, rng, tmp_path)() for _ in range(5000)]
    output = [length_sampler(scenario.output.tokens, rng, tmp_path)() for _ in range(5000)]
    assert min(prompt) >= 10 and max(prompt) <= 400
    assert statistics.median(prompt) == pytest.approx(100, rel=0.05)
    assert min(output) == 30 and max(output) == 60
    (tmp_path / "lengths.txt").write_text("5\n9\n")
    empirical = load_scenario_text("name: t\nmodel: m\nrequests: 1\narrival: {kind: closed, concurrency: 1}\n"
                                   "prompt: {tokens: {kind: empirical, file: lengths.txt}}\n", base=tmp_path)
    drawn = {length_sampler(empirical.prompt.tokens, rng, tmp_path)() for _ in range(200)}
    assert drawn == {5, 9}


def test_workload_long_context_share_and_shared_prefixes():
    scenario = load_scenario_text(
        "name: t\nmodel: m\nrequests: 1\narrival: {kind: closed, concurrency: 1}\n"
        "prompt:\n  tokens: 10\n  long_context: {share: 0.2, tokens: 500}\n"
        "  shared_prefix: {tokens: 30, groups: 2, share: 0.5}\n")
    workload = Workload(scenario, Path.cwd(), random.Random(5))
    draws = [workload.draw() for _ in range(4000)]
    long = sum(1 for _, text, _ in draws if len(text.split()) == 500)
    assert long / 4000 == pytest.approx(0.2, abs=0.03)
    prefixes = [prefix for prefix, _, _ in draws if prefix is not None]
    assert len(prefixes) / 4000 == pytest.approx(0.5, abs=0.03)
    assert len(set(prefixes)) == 2 and all(len(p.split()) == 30 for p in prefixes)
    texts = [text for _, text, _ in draws]
    assert len(set(texts)) == len(texts)  # each request's own part is unique (no accidental cache hits)
