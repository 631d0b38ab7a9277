"""gatehouse bench …"""

from __future__ import annotations

import typer

from gatehouse.cli.common import console, fail

app = typer.Typer(help="Benchmark tools.", no_args_is_help=True)


@app.command("mock-upstream")
def mock_upstream(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(9000, "--port", min=1, max=65535),
    ttft: float = typer.Option(0.0, "--ttft", min=0, help="Seconds before the first token."),
    tokens_per_second: float = typer.Option(0.0, "--tokens-per-second", min=0, help="0 means as fast as possible."),
    failure_rate: float = typer.Option(0.0, "--failure-rate", min=0, max=1, help="Share of requests answered 500."),
    slow_seconds: float = typer.Option(30.0, "--slow-seconds", min=0, help="Delay of the /slow/v1 behaviour."),
) -> None:
    """Serve a fake OpenAI-compatible engine (see gatehouse.bench.mock_upstream for its behaviours)."""
    import uvicorn

    from gatehouse.bench.mock_upstream import MockSettings, create_mock_app

    settings = MockSettings(ttft=ttft, tokens_per_second=tokens_per_second, failure_rate=failure_rate,
                            slow_seconds=slow_seconds)
    console.print(f"mock upstream on http://{host}:{port}/v1 (behaviours: http://{host}:{port}/<behaviour>/v1)")
    uvicorn.run(create_mock_app(settings), host=host, port=port, log_level="warning", access_log=False)


def _fmt(value, digits: int = 1) -> str:  # type: ignore[no-untyped-def]
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

    from gatehouse.bench.engine_bench import run_engine_bench
    from gatehouse.config import Settings
    from gatehouse.engines.model_files import ensure_builtin_model

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
    for level in report.levels:
        table.add_row(level.system, str(level.concurrency), str(level.requests), str(level.errors),
                      _fmt(level.tokens_per_second), _fmt(level.steady_tokens_per_second),
                      _fmt(level.ttft_p50_ms), _fmt(level.ttft_p99_ms),
                      _fmt(level.itl_p50_ms), _fmt(level.itl_p99_ms))
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

