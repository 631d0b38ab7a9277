"""`gatehouse bench run` against the real mock upstream and a real gateway: every arrival
shape, sessions, tenants, faults, mid-stream kills, timeouts, and the CLI's reports."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatehouse.bench.report import build_report
from gatehouse.bench.runner import ScenarioRun, build_plans, run_async
from gatehouse.bench.scenario import load_scenario_text

from helpers import cli, start_mock_upstream


@pytest.fixture
def bench_mock(logs: Path):
    """A mock of its own: fault injection changes its settings."""
    server = start_mock_upstream(logs)
    yield server
    server.stop()


def run(text: str, target: str, tmp_path: Path, key: str = "unused", mock: str | None = None,
        environ: dict[str, str] | None = None) -> dict[str, Any]:
    scenario = load_scenario_text("name: test\n" + ("" if "model:" in text else "model: chat\n") + text, base=tmp_path)
    plans = build_plans(scenario, key, environ or {}, tmp_path)
    return build_report(run_async(ScenarioRun(scenario, target, plans, tmp_path, mock).run()))


SHAPES = {
    "closed": ("duration: 0.5s\narrival: {kind: closed, concurrency: 4}\n", None),
    "constant": ("duration: 0.5s\narrival: {kind: constant, rate: 40}\n", 20),
    "poisson": ("duration: 0.5s\narrival: {kind: poisson, rate: 40}\n", None),
    "gamma": ("duration: 0.5s\narrival: {kind: gamma, rate: 40, cv: 2}\n", None),
    "burst": ("arrival: {kind: burst, bursts: [{at: 0s, count: 10}, {at: 200ms, count: 15}]}\n", 25),
    "ramp": ("arrival: {kind: ramp, from: 10, to: 70, over: 0.5s}\n", 20),
    "exponential ramp": ("arrival: {kind: ramp, from: 10, to: 70, over: 0.5s, shape: exponential, process: poisson}\n",
                         None),
    "stages": ("arrival:\n  kind: stages\n  stages:\n    - {duration: 0.3s, arrival: {kind: constant, rate: 20}}\n"
               "    - {duration: 0.3s, arrival: {kind: closed, concurrency: 2}}\n", None),
    "replay": ("arrival: {kind: replay, file: trace.jsonl, speed: 4}\n", 10),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_arrival_shape_completes_against_the_mock(shape, bench_mock, tmp_path):
    (tmp_path / "trace.jsonl").write_text("".join(f'{{"t": {i * 0.2}, "output_tokens": {i + 1}}}\n' for i in range(10)))
    text, expected = SHAPES[shape]
    report = run(text + "output: {tokens: 6}\n", bench_mock.url, tmp_path, mock=bench_mock.url)
    summary = report["summary"]
    assert summary["requests"] > 3 and summary["errors"] == 0, summary["errors_by_kind"]
    if expected is not None:
        assert summary["requests"] == expected
    # Requests sent before the first answer are cold, reported apart from the warm percentiles.
    cold = summary["cold"]["count"]
    assert 1 <= cold <= {"closed": 4, "burst": 10, "stages": 2}.get(shape, 3)
    assert sum(r["cold"] for r in report["requests"]) == cold and report["requests"][0]["cold"]
    assert summary["ttft_ms"]["count"] == summary["requests"] - cold
    assert summary["cold"]["status"] == 200
    assert summary["itl_ms"]["count"] > 0 and summary["throughput_rps"] > 0
    requests = report["requests"]
    assert all(r["status"] == 200 and r["output_tokens"] for r in requests)
    if shape == "replay":  # per-request lengths from the trace
        assert sorted(r["output_tokens"] for r in requests) == list(range(1, 11))
    else:
        assert {r["output_tokens"] for r in requests} == {6}
    # The mock's own timing is joined to every request, so the client-side overhead is known.
    assert summary["added_ms_mock"]["count"] == summary["requests"] - cold
    assert report["timeline"] and report["load_curve"]


def test_sessions_resend_the_history_and_prefixes_are_shared(bench_mock, tmp_path):
    report = run("requests: 6\narrival: {kind: closed, concurrency: 1}\nstream: false\n"
                 "prompt: {tokens: 10, shared_prefix: {tokens: 40}}\noutput: {tokens: 5}\n"
                 "sessions: {turns: 3}\n", bench_mock.url, tmp_path)
    prompts = [r["prompt_tokens"] for r in report["requests"]]
    assert len(prompts) == 6
    # The mock counts words: 40 shared + 10 own on the first turn; each later turn adds the
    # previous answer (5) and a new question (10).
    assert prompts == [50, 65, 80, 50, 65, 80]
    assert report["summary"]["ttft_ms"] is None and report["summary"]["e2e_ms"]["count"] == 5


def test_faults_injected_in_a_window_then_restored(bench_mock, tmp_path):
    report = run("duration: 2s\narrival: {kind: closed, concurrency: 2}\nstream: false\n"
                 "faults: [{at: 0.6s, for: 0.6s, set: {failure_rate: 1}}]\n", bench_mock.url, tmp_path,
                 mock=bench_mock.url)
    requests = report["requests"]
    failed = [r for r in requests if r["status"] == 500]
    assert failed and len(failed) < len(requests)
    # Generous margins: the control requests that open and close the window take time on a busy machine.
    assert all(0.3 <= r["start_s"] <= 1.6 for r in failed)
    assert any(r["status"] == 200 and r["start_s"] < 0.5 for r in requests)
    assert any(r["status"] == 200 and r["start_s"] > 1.4 for r in requests)
    assert report["summary"]["errors_by_kind"] == {"http_500": len(failed)}
    assert any("fault from 0.6s for 0.6s" in note for note in report["notes"])
    assert httpx.get(f"{bench_mock.url}/_mock/config").json()["failure_rate"] == 0


def test_a_run_ending_inside_a_fault_window_leaves_the_mock_as_it_was(bench_mock, tmp_path):
    run("requests: 4\narrival: {kind: closed, concurrency: 1}\nfaults: [{at: 0s, for: 1h, set: {slow_rate: 1, "
        "slow_seconds: 0.01}}]\n", bench_mock.url, tmp_path, mock=bench_mock.url)
    assert httpx.get(f"{bench_mock.url}/_mock/config").json()["slow_rate"] == 0


def test_mid_stream_kills_and_timeouts_are_counted_as_errors(bench_mock, tmp_path):
    dropped = run("requests: 3\narrival: {kind: closed, concurrency: 1}\noutput: {tokens: 8}\n"
                  "faults: [{at: 0s, for: 1h, set: {drop_rate: 1}}]\n", bench_mock.url, tmp_path, mock=bench_mock.url)
    assert dropped["summary"]["errors"] == 3
    assert all(r["status"] == 200 and "closed mid-response" in r["error"] for r in dropped["requests"])
    slow = run("requests: 2\narrival: {kind: closed, concurrency: 1}\ntimeout: 200ms\n"
               "faults: [{at: 0s, for: 1h, set: {slow_rate: 1, slow_seconds: 2}}]\n", bench_mock.url, tmp_path,
               mock=bench_mock.url)
    assert slow["summary"]["errors_by_kind"] == {"timeout": 2}
    assert all(190 <= r["e2e_ms"] < 1000 for r in slow["requests"])


def test_tenants_through_the_gateway_with_server_timing_and_fallback_headers(gateway, dev_key, fresh_key, mock_upstream,
                                                                           tmp_path):
    keys = {"NOISY_KEY": fresh_key(), "QUIET_KEY": fresh_key()}
    scenario = ("model: mock-chat\nduration: 1s\narrival: {kind: closed, concurrency: 1}\noutput: {tokens: 4}\n"
                "tenants:\n  - {name: noisy, key_env: NOISY_KEY, arrival: {kind: closed, concurrency: 4}}\n"
                "  - {name: quiet, key_env: QUIET_KEY}\n"
                "  - {name: falling-back, key_env: QUIET_KEY, model: fallback-chat, arrival: {kind: constant, "
                "rate: 2}}\n")
    report = run(scenario, gateway.url, tmp_path, mock=mock_upstream.url, environ=keys)
    tenants = {row["name"]: row for row in report["tenants"]}
    assert tenants["noisy"]["ok"] > tenants["quiet"]["ok"] > 0
    assert 0 < report["summary"]["jain_fairness"] <= 1
    requests = report["requests"]
    mocked = [r for r in requests if r["deployment"] == "mock-ok"]
    assert mocked and all(r["gateway_ms"] is not None and r["gateway_ms"] < r["e2e_ms"] for r in mocked)
    assert all(r["request_id"].startswith("req_") for r in requests)
    # Gatehouse passes its request id on, so the mock's own timing joins to what the client saw.
    assert report["summary"]["added_ms_mock"]["count"] == len([r for r in mocked if not r["cold"]])
    assert report["summary"]["added_ms_header"]["p50"] > 0
    fell_back = [r for r in requests if r["tenant"] == "falling-back"]
    assert fell_back and all(r["fallbacks"].startswith("mock-500=http_500") for r in fell_back)
    assert report["summary"]["fallback_rate"] > 0


def test_bench_run_cli_writes_json_and_html(gateway, dev_key, fresh_key, tmp_path):
    key = fresh_key()
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("name: <cli smoke>\nmodel: mock-chat\nrequests: 5\narrival: {kind: closed, concurrency: 2}\n"
                        "slo: {ttft: 2s}\n")
    env = {**os.environ, "GATEHOUSE_BENCH_KEY": key}
    result = cli("bench", "run", "--target", gateway.url, "--scenario", str(scenario), "--json",
                 str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"), "--quiet", env=env)
    assert "5 requests" in result.stdout and "goodput" in result.stdout
    assert key not in result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["ok"] == 5 and len(report["requests"]) == 5
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "&lt;cli smoke&gt;" in html and "<script" not in html
    assert key not in html and key not in (tmp_path / "r.json").read_text()


@pytest.mark.parametrize("scenario, extra, message", [
    ("name: x\narrival: {kind: poisson, rate: 1}\n", [], "give duration or requests"),
    ("name: x\nmodel: m\nrequests: 1\narrival: {kind: closed, concurrency: 1}\n"
     "faults: [{at: 0s, for: 1s, set: {failure_rate: 1}}]\n", [], "pass --mock"),
    ("name: x\nmodel: m\nrequests: 1\narrival: {kind: closed, concurrency: 1}\n"
     "tenants: [{name: a, key_env: GATEHOUSE_TEST_UNSET_KEY}]\n", [], "GATEHOUSE_TEST_UNSET_KEY is not set"),
    ("name: x\nrequests: 1\narrival: {kind: closed, concurrency: 1}\n", [], "no model"),
    ("name: x\nmodel: m\nrequests: 1\narrival: {kind: closed, concurrency: 1}\n", ["--target", "ftp://x"],
     "must be an http(s) URL"),
])
def test_bench_run_cli_refuses_bad_input_clearly(tmp_path, scenario, extra, message):
    path = tmp_path / "s.yaml"
    path.write_text(scenario)
    env = {k: v for k, v in os.environ.items() if k != "GATEHOUSE_BENCH_KEY"} | {"GATEHOUSE_BENCH_KEY": "k"}
    args = ["bench", "run", "--target", "http://127.0.0.1:9", "--scenario", str(path), *extra]
    result = cli(*args, env=env, check=False)
    assert result.returncode == 1
    assert message in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_bench_run_against_nothing_reports_connection_errors(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nmodel: m\nrequests: 3\narrival: {kind: closed, concurrency: 1}\n")
    from helpers import free_port

    result = cli("bench", "run", "--target", f"http://127.0.0.1:{free_port()}", "--scenario", str(path),
                 "--key", "k", "--quiet", "--json", str(tmp_path / "r.json"), env=dict(os.environ))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["errors"] == 3 and report["summary"]["errors_by_kind"] == {"connect": 3}
    assert "connect × 3" in result.stdout


def test_bench_overhead_reports_every_level(tmp_path):
    result = cli("bench", "overhead", "--concurrency", "1,4", "--duration", "1", "--json", str(tmp_path / "o.json"),
                 env=dict(os.environ), timeout=120)
    figures = json.loads((tmp_path / "o.json").read_text())
    assert [row["concurrency"] for row in figures["levels"]] == [1, 4]
    for row in figures["levels"]:
        assert row["errors"] == 0 and row["gatehouse_rps"] > 0 and row["mock_rps"] > 0
        assert row["gatehouse_p50_ms"] > row["mock_p50_ms"] and row["added_header_p50_ms"] > 0
        assert row["gatehouse_cpu_us_per_request"] > 0  # the gateway's processes were found and used CPU
    assert "added" in result.stdout and "gh CPU" in result.stdout


def test_streams_are_relayed_without_buffering(gateway, dev_key, fresh_key, mock_upstream, tmp_path):
    """A slow stream (10 tokens/s) through Gatehouse: the first token reaches the client about
    when the mock sends it, long before the stream ends."""
    report = run("model: mock-chat\nrequests: 3\narrival: {kind: closed, concurrency: 1}\noutput: {tokens: 10}\n"
                 "faults: [{at: 0s, for: 1h, set: {tokens_per_second: 10}}]\n", gateway.url, tmp_path,
                 key=fresh_key(), mock=mock_upstream.url)
    assert report["summary"]["errors"] == 0
    for request in report["requests"]:
        assert request["e2e_ms"] >= 900  # ten tokens at ten a second
        assert request["ttft_ms"] < request["e2e_ms"] / 3
        assert request["added_ms_mock"] is not None and request["added_ms_mock"] < 100
    assert httpx.get(f"{mock_upstream.url}/_mock/config").json()["tokens_per_second"] == 0


def test_overlapping_fault_windows_combine(bench_mock, tmp_path):
    """A slow window with a failing window inside it: both apply while they overlap."""
    report = run("duration: 1.6s\narrival: {kind: closed, concurrency: 2}\nstream: false\n"
                 "faults:\n  - {at: 0s, for: 1.6s, set: {ttft: 0.02}}\n"
                 "  - {at: 0.5s, for: 0.5s, set: {failure_rate: 1}}\n", bench_mock.url, tmp_path, mock=bench_mock.url)
    requests = report["requests"]
    failed = [r for r in requests if r["status"] == 500]
    assert failed and all(0.3 <= r["start_s"] <= 1.3 for r in failed)
    # The slow window's 20 ms time to first token holds before, during and after the failing one.
    assert all(r["e2e_ms"] >= 19 for r in requests if r["status"] == 200)
    assert any(r["status"] == 200 and r["start_s"] > 1.2 for r in requests)
    config = httpx.get(f"{bench_mock.url}/_mock/config").json()
    assert config["ttft"] == 0 and config["failure_rate"] == 0


def test_a_spent_request_budget_ends_the_run(bench_mock, tmp_path):
    report = run("requests: 3\narrival:\n  kind: stages\n  stages:\n"
                 "    - {duration: 4s, arrival: {kind: constant, rate: 20}}\n"
                 "    - {duration: 2s, arrival: {kind: closed, concurrency: 2}}\n", bench_mock.url, tmp_path)
    assert report["summary"]["requests"] == 3
    assert report["duration_s"] < 2


def test_a_disconnecting_client_is_recorded_as_499(gateway, gateway_home, dev_key, fresh_key):
    """The client gives up on a slow deployment; Gatehouse stops the call and records why."""
    import sqlite3
    import time

    key = fresh_key()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=0.3,
                   json={"model": "slow", "messages": [{"role": "user", "content": "hi"}]})
    deadline = time.monotonic() + 10
    rows: list = []
    while time.monotonic() < deadline and not rows:
        time.sleep(0.2)
        with sqlite3.connect(gateway_home.home / "gatehouse.db") as connection:
            rows = connection.execute("SELECT status, error_code, latency_ms FROM decision_records "
                                      "WHERE key_id = ? AND alias = 'slow'", (key[4:16],)).fetchall()
    assert rows == [(499, "client_disconnected", pytest.approx(300, abs=250))]
