"""gatehouse bench …"""

from __future__ import annotations

import typer

from gatehouse.cli.common import console

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
