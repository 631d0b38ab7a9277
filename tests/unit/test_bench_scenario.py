"""The scenario parser: good files load, bad ones are refused with the line and a clear reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatehouse.bench.scenario import ScenarioError, load_scenario, load_scenario_text, parse_seconds

GOOD = """\
name: chat mix
model: chat
duration: 30s
arrival: {kind: poisson, rate: 20}
prompt:
  tokens: {kind: lognormal, median: 200, sigma: 0.8, min: 8, max: 4000}
  long_context: {share: 0.05, tokens: 6000}
  shared_prefix: {tokens: 500, groups: 4, share: 0.6}
output:
  tokens: {kind: uniform, min: 16, max: 256}
sessions: {turns: 3, think_time: 1.5s}
tenants:
  - {name: noisy, key_env: NOISY_KEY, arrival: {kind: constant, rate: 50}}
  - {name: quiet, key_env: QUIET_KEY, weight: 2}
slo: {ttft: 500ms, itl: 50ms, e2e: 10s}
faults:
  - {at: 10s, for: 5s, set: {failure_rate: 0.5}}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text)
    return [str(problem) for problem in info.value.problems]


def test_a_full_scenario_loads():
    scenario = load_scenario_text(GOOD)
    assert scenario.duration == 30 and scenario.slo.ttft == 0.5 and scenario.sessions.think_time == 1.5
    assert scenario.tenants[0].arrival.rate == 50 and scenario.tenants[1].weight == 2
    assert scenario.faults[0].duration == 5 and scenario.faults[0].set.failure_rate == 0.5
    assert scenario.prompt.long_context.tokens.value == 6000


@pytest.mark.parametrize("value, seconds", [("500ms", 0.5), ("2s", 2), ("1.5m", 90), ("1h", 3600), (3, 3), ("4", 4)])
def test_durations(value, seconds):
    assert parse_seconds(value) == seconds


@pytest.mark.parametrize("text, expected", [
    ("name: x\narrival: {kind: poisson, rate: 5}\n",
     "line 1: poisson arrivals never end by themselves: give duration or requests"),
    ("name: x\nduration: 1s\narrival: {kind: poisson, rate: -5}\n", "line 3: arrival.rate: Input should be greater than 0"),
    ("name: x\nduration: 1q\narrival: {kind: closed, concurrency: 1}\n",
     "line 2: duration: invalid duration '1q': use e.g. 500ms, 2s, 1.5m, 1h"),
    ("name: x\nrequests: 1\narrival: {kind: teleport}\n", "line 3: arrival: Input tag 'teleport' found using 'kind'"),
    ("name: x\nrequests: 1\narrival: {kind: closed, concurrency: 1}\nburst: true\n", "line 4: burst: unknown field 'burst'"),
    ("name: x\nrequests: 1\narrival: {kind: closed, concurrency: 1}\nprompt:\n  tokens: {kind: normal, mean: 9, "
     "stddev: 1, min: 50, max: 10}\n", "line 5: prompt.tokens: min (50) is greater than max (10)"),
    ("name: x\nrequests: 1\narrival:\n  kind: stages\n  stages:\n    - {duration: 1s, arrival: {kind: closed, "
     "concurrency: many}}\n", "line 6: arrival.stages[0].arrival.concurrency: Input should be a valid integer"),
    ("name: x\nrequests: 1\nrequests: 2\narrival: {kind: closed, concurrency: 1}\n",
     "line 3: requests: duplicate key 'requests' (first at line 2)"),
    ("name: x\nrequests: 1\narrival: {kind: closed, concurrency: 1}\ntenants: [{name: a}, {name: a}]\n",
     "tenant names must be unique"),
    ("name: x\nrequests: 1\narrival: {kind: replay, file: missing.jsonl}\n", "line 3: arrival.file: file not found"),
    ("name: x\nrequests: 1\narrival: {kind: closed, concurrency: 1}\nprompt: {tokens: {kind: empirical}}\n",
     "give either values or file"),
    ("name: x\nrequests: 1\narrival: {kind: closed, concurrency: 1}\nfaults: [{at: 1s, for: 1s, set: {failure_rate: 2}}]\n",
     "line 4: faults[0].set.failure_rate: Input should be less than or equal to 1"),
    ("- just\n- a list\n", "line 1: a scenario is a mapping"),
    ("name: [unclosed\n", "not valid YAML"),
    ("", "the scenario file is empty"),
])
def test_bad_scenarios_are_refused_clearly(text, expected):
    assert any(expected in problem for problem in problems(text)), problems(text)


def test_every_problem_is_reported_at_once():
    found = problems("name: x\nduration: soon\narrival: {kind: poisson, rate: 0}\nextra: 1\n")
    assert [p.split(":")[0] for p in found] == ["line 2", "line 3", "line 4"]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "nope.yaml")


def test_the_example_scenarios_load():
    examples = sorted((Path(__file__).resolve().parents[2] / "examples" / "bench").glob("*.yaml"))
    assert len(examples) >= 5
    for path in examples:
        assert load_scenario(path).name
