"""gatehouse bench …"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from gatehouse.bench.runner import Progress as RunProgress

import typer

from gatehouse.cli.common import console, fail
from gatehouse.core.config import Settings
from gatehouse.engines.model_files import ensure_builtin_model

app = typer.Typer(help="Benchmark tools.", no_args_is_help=True)


@app.command("mock-upstream")
def mock_upstream(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(9000, "--port", min=1, max=65535),
    ttft: float = typer.Option(0.0, "--ttft", min=0, help="Seconds before the first token."),
    tokens_per_second: float = typer.Option(0.0, "--tokens-per-second", min=0, help="0 means as fast as possible."),
    failure_rate: float = typer.Option(0.0, "--failure-rate", min=0, max=1, help="Share of requests answered 500."),
    drop_rate: float = typer.Option(0.0, "--drop-rate", min=0, max=1, help="Share of streams cut off mid-way."),
    slow_rate: float = typer.Option(0.0, "--slow-rate", min=0, max=1, help="Share of requests delayed by --slow-seconds."),
    slow_seconds: float = typer.Option(30.0, "--slow-seconds", min=0, help="Delay of the /slow/v1 behaviour."),
) -> None:
    """Serve a fake OpenAI-compatible engine (see gatehouse.bench.mock_upstream for its behaviours)."""
    import uvicorn

    from gatehouse.bench.mock_upstream import MockSettings, create_mock_app  # lazy: the bench tools load only for `gatehouse bench`

    settings = MockSettings(ttft=ttft, tokens_per_second=tokens_per_second, failure_rate=failure_rate,
                            drop_rate=drop_rate, slow_rate=slow_rate, slow_seconds=slow_seconds)
    console.print(f"mock upstream on http://{host}:{port}/v1 (behaviours: http://{host}:{port}/<behaviour>/v1)")
    app = create_mock_app(settings)
    gc.freeze()  # what start-up made lives as long as the process: no collection need walk it again
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command("engine")
def engine(
    concurrency: str = typer.Option("1,2,4,8,16", "--concurrency", help="Comma-separated closed-loop levels."),
    requests: int = typer.Option(16, "--requests", min=1, help="Requests per level (at least 4 × the level)."),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1, help="Tokens generated per request."),
    compare_server: bool = typer.Option(True, "--compare-server/--no-compare-server",
                                        help="Also measure llama_cpp.server (needs pip install 'llama-cpp-python[server]')."),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads for every system (default: every CPU available)."),
    model_path: str = typer.Option(None, "--model", help="GGUF file (default: the built-in Gemma 3 270M)."),
    json_out: str = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
) -> None:
    """Benchmark the embedded engine: throughput, TTFT and inter-token latency per concurrency,
    against llama_cpp.server and a raw batched-decode loop, plus the prefix cache's TTFT effect."""
    from pathlib import Path

    from rich.table import Table

    from gatehouse.bench.engine_bench import run_engine_bench  # lazy: the bench tools load only for `gatehouse bench`

    levels = [int(part) for part in concurrency.split(",") if part.strip()]
    if not levels or any(level < 1 for level in levels):
        fail("--concurrency takes positive integers, e.g. 1,2,4,8")
    if compare_server:
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError:
            fail("llama_cpp.server is not installed: pip install 'llama-cpp-python[server]', "
                 "or pass --no-compare-server")
    path = model_path or str(ensure_builtin_model(Settings.from_env().models_dir))
    try:
        report = run_engine_bench(str(Path(path).resolve()), levels, requests, max_tokens, compare_server, threads,
                                  lambda message: console.print(f"[dim]… {message}[/]"))
    except RuntimeError as exc:
        fail(str(exc))
    table = Table(title=f"Embedded engine, {max_tokens} tokens per request; ratios use steady tok/s",
                  header_style="bold")
    for column in ("system", "conc.", "requests", "errors", "tok/s", "steady tok/s", "TTFT p50 ms", "TTFT p99 ms",
                   "ITL p50 ms", "ITL p99 ms"):
        table.add_column(column, justify="right" if column != "system" else "left")
    for row in report.levels:
        table.add_row(row.system, str(row.concurrency), str(row.requests), str(row.errors),
                      _fmt(row.tokens_per_second), _fmt(row.steady_tokens_per_second),
                      _fmt(row.ttft_p50_ms), _fmt(row.ttft_p99_ms),
                      _fmt(row.itl_p50_ms), _fmt(row.itl_p99_ms))
    console.print(table)
    for level in levels:
        parts = [f"{name} = {_fmt(value, 2)}×" for name, value in report.ratios(level).items() if value is not None]
        if parts and level > 1:
            console.print(f"concurrency {level}: " + "; ".join(parts))
    if report.prefix is not None:
        prefix = report.prefix
        console.print(f"shared system prompt ({prefix.prompt_tokens} tokens): cold TTFT {prefix.cold_ttft_ms:.0f} ms, "
                      f"warm TTFT p50 {_fmt(prefix.warm_ttft_p50_ms, 0)} ms, cached tokens "
                      f"{prefix.cached_tokens}, speed-up {_fmt(prefix.speedup, 1)}×")
    if json_out:
        Path(json_out).write_bytes(report.to_json())
        console.print(f"report written to {json_out}")



def _progress_display(quiet: bool) -> Progress | None:
    if quiet:
        return None
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"),
                    TimeElapsedColumn(), console=console, transient=True)


@app.command("run")
def run(
    target: str = typer.Option(..., "--target", help="Base URL of the gateway or engine, e.g. http://127.0.0.1:8080."),
    scenario_file: str = typer.Option(..., "--scenario", help="Scenario file (YAML); see docs/benchmarks.md."),
    key: str = typer.Option(None, "--key", envvar="GATEHOUSE_BENCH_KEY", show_envvar=True,
                            help="API key for tenants without key_env (prefer the environment variable)."),
    model: str = typer.Option(None, "--model", help="Model alias (overrides the scenario's)."),
    mock: str = typer.Option(None, "--mock", help="Base URL of a gatehouse mock upstream behind the target: "
                                                  "needed for faults, and gives the mock's own timing."),
    json_out: str = typer.Option(None, "--json", help="Write the full report (every request) as JSON here."),
    html_out: str = typer.Option(None, "--html", help="Write a self-contained HTML report with plots here."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Send a scenario's traffic to TARGET and report latency, throughput, goodput, errors and fairness."""
    import os
    from pathlib import Path

    import httpx
    from rich.markup import escape

    from gatehouse.bench.arrivals import TraceError  # lazy: the bench tools load only for `gatehouse bench`
    from gatehouse.bench.report import build_report, report_json  # lazy: the bench tools load only for `gatehouse bench`
    from gatehouse.bench.runner import ScenarioRun, build_plans, run_async  # lazy: the bench tools load only for `gatehouse bench`
    from gatehouse.bench.scenario import ScenarioError, load_scenario  # lazy: the bench tools load only for `gatehouse bench`

    try:
        scenario = load_scenario(scenario_file)
    except ScenarioError as exc:
        fail(str(exc))
    for path in (json_out, html_out):
        if path:
            try:
                Path(path).touch()
            except OSError as exc:
                fail(f"cannot write {path}: {exc.strerror}")
    if scenario.faults and not mock:
        fail("the scenario injects faults: pass --mock with the mock upstream's base URL (gatehouse bench mock-upstream)")
    if not target.startswith(("http://", "https://")):
        fail(f"--target must be an http(s) URL, not {target!r}")
    base = Path(scenario_file).resolve().parent
    try:
        plans = build_plans(scenario, key, dict(os.environ), base, model)
    except (ValueError, TraceError) as exc:
        fail(str(exc))
    display = _progress_display(quiet)
    task: TaskID | None = None

    def on_progress(progress: RunProgress) -> None:
        if display is None or task is None:
            return
        total = progress.planned_requests or progress.planned_seconds
        done = progress.completed if progress.planned_requests else min(progress.elapsed, total or 0)
        counts = f"sent {progress.sent}  ok {progress.ok}  errors {progress.errors}"
        display.update(task, total=total, completed=done, counts=counts)

    try:
        if display is not None:
            display.start()
            task = display.add_task(escape(scenario.name), total=None, counts="")
        result = run_async(ScenarioRun(scenario, target, plans, base, mock, on_progress).run())
    except KeyboardInterrupt:
        fail("interrupted")
    except httpx.HTTPError as exc:
        fail(f"the mock upstream's control endpoints at {mock} did not answer: {type(exc).__name__}")
    except (OSError, ValueError) as exc:
        fail(f"the run failed: {exc}")
    finally:
        if display is not None:
            display.stop()
    report = build_report(result)
    print_summary(report)
    if json_out:
        _write(json_out, report_json(report), "JSON report")
    if html_out:
        from gatehouse.bench.html_report import render_html  # lazy: the bench tools load only for `gatehouse bench`

        _write(html_out, render_html(report).encode(), "HTML report")


def _write(path: str, content: bytes, what: str) -> None:
    from pathlib import Path

    try:
        Path(path).write_bytes(content)
    except OSError as exc:
        fail(f"cannot write the {what} to {path}: {exc.strerror}")
    console.print(f"{what} written to {path}", highlight=False)


def print_summary(report: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    summary = report["summary"]
    console.print(f"[bold]{escape(report['scenario']['name'])}[/] against {escape(report['target'])}: "
                  f"{summary['requests']} requests in {report['duration_s']:.1f}s", highlight=False)
    line = (f"throughput {summary['throughput_rps']:.1f} req/s, {summary['output_tokens_per_s']:.0f} output tok/s; "
            f"errors {summary['error_rate']:.1%} (429: {summary['rate_limited_rate']:.1%}); "
            f"fallbacks {summary['fallback_rate']:.1%}")
    if summary["goodput_rps"] is not None:
        line += f"; goodput {summary['goodput_rps']:.1f} req/s"
        if summary["goodput_share"] is not None:
            line += f" ({summary['goodput_share']:.1%} within the SLO)"
    if summary["jain_fairness"] is not None:
        line += f"; Jain's fairness {summary['jain_fairness']:.3f}"
    console.print(line, highlight=False)
    table = Table(header_style="bold")
    for column in ("ms", "count", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"):
        table.add_column(column, justify="left" if column == "ms" else "right")
    for name, label in (("ttft_ms", "TTFT"), ("itl_ms", "inter-token"), ("e2e_ms", "end to end"),
                        ("added_ms_header", "gatehouse (Server-Timing)"), ("added_ms_mock", "added vs mock's timing")):
        dist = summary[name]
        if dist is not None:
            table.add_row(label, str(dist["count"]), *(_fmt(dist[q], 2) for q in ("mean", "p50", "p90", "p95", "p99",
                                                                                 "p99_9", "max")))
    console.print(table)
    if summary["cold"] is not None:
        cold = summary["cold"]
        console.print(f"cold start ({cold['count']} request(s) sent before the model's first answer; the first: "
                      f"status {cold['status']}, TTFT {_fmt(cold['ttft_ms'], 1)} ms, end to end {_fmt(cold['e2e_ms'], 1)} ms)"
                      " — left out of the table above", highlight=False)
    if len(report["tenants"]) > 1:
        tenants = Table(header_style="bold")
        for column in ("tenant", "requests", "ok", "429", "req/s", "fair-share ratio", "e2e p50", "e2e p99"):
            tenants.add_column(column, justify="left" if column == "tenant" else "right")
        for row in report["tenants"]:
            e2e = row["e2e_ms"] or {}
            tenants.add_row(escape(row["name"]), str(row["requests"]), str(row["ok"]), str(row["rate_limited"]),
                            _fmt(row["throughput_rps"]), _fmt(row["normalised_share"], 2), _fmt(e2e.get("p50")),
                            _fmt(e2e.get("p99")))
        console.print(tenants)
    if summary["errors_by_kind"]:
        console.print("errors: " + ", ".join(f"{kind} × {count}" for kind, count in summary["errors_by_kind"].items()),
                      highlight=False, markup=False)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


@app.command("overhead")
def overhead(
    concurrency: str = typer.Option("1,16,64", "--concurrency", help="Comma-separated closed-loop levels."),
    duration: float = typer.Option(8.0, "--duration", min=1, help="Seconds measured per level and system."),
    workers: int = typer.Option(2, "--workers", min=1, help="Gatehouse worker processes."),
    stream: bool = typer.Option(False, "--stream/--no-stream", help="Streamed completions (latency is then TTFT)."),
    max_tokens: int = typer.Option(8, "--max-tokens", min=1, help="Tokens the mock returns per request."),
    json_out: str = typer.Option(None, "--json", help="Also write the figures as JSON to this file."),
) -> None:
    """Start the mock upstream and a fully governed Gatehouse in front of it; report throughput and
    the latency Gatehouse adds at each concurrency."""
    from pathlib import Path

    import orjson
    from rich.table import Table

    from gatehouse.bench.overhead import run_overhead  # lazy: the bench tools load only for `gatehouse bench`

    levels = [int(part) for part in concurrency.split(",") if part.strip().isdigit()]
    if not levels or any(level < 1 for level in levels) or len(levels) != len(concurrency.split(",")):
        fail("--concurrency takes positive integers, e.g. 1,16,64")
    try:
        result = run_overhead(levels, duration, workers, stream, max_tokens, lambda m: console.print(f"[dim]… {m}[/]"))
    except RuntimeError as exc:
        fail(str(exc))
    metric = "TTFT" if stream else "latency"
    table = Table(title=f"Gatehouse ({workers} workers, key auth + policy + decision records + metrics) "
                        f"vs the mock upstream alone, {'streamed' if stream else 'non-streamed'}, {max_tokens} tokens",
                  header_style="bold")
    for column in ("conc.", "mock req/s", "gh req/s", "mock p50", "gh p50", "added", "timing", "mock p99", "gh p99",
                   "gh CPU µs/req", "errors"):
        table.add_column(column, justify="right")
    for row in result["levels"]:
        table.add_row(str(row["concurrency"]), _fmt(row["mock_rps"], 0), _fmt(row["gatehouse_rps"], 0),
                      _fmt(row["mock_p50_ms"], 2), _fmt(row["gatehouse_p50_ms"], 2), _fmt(row["added_p50_ms"], 2),
                      _fmt(row["added_header_p50_ms"], 2), _fmt(row["mock_p99_ms"], 2), _fmt(row["gatehouse_p99_ms"], 2),
                      _fmt(row["gatehouse_cpu_us_per_request"], 0), str(row["errors"]))
    console.print(table)
    console.print(f"gh = through Gatehouse; {metric} in ms; added = gh p50 - mock p50; timing = Gatehouse's own time "
                  "per its Server-Timing header (p50); gh CPU = the gateway processes' CPU time per request (load-independent)",
                  highlight=False)
    if json_out:
        Path(json_out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        console.print(f"figures written to {json_out}")
