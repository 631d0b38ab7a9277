"""`gatehouse bench engine` runs end to end on a tiny load and reports sane figures."""

import json
import subprocess
import sys


def test_bench_engine_smoke(tmp_path, shared_models_dir):
    from gatehouse.engines.model_files import builtin_model_path

    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "gatehouse.cli.main", "bench", "engine", "--concurrency", "1,2", "--requests", "2",
         "--max-tokens", "4", "--no-compare-server", "--model", str(builtin_model_path(shared_models_dir)),
         "--json", str(report_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    systems = {(level["system"], level["concurrency"]) for level in report["levels"]}
    assert systems == {("gatehouse", 1), ("gatehouse", 2), ("raw-decode", 1), ("raw-decode", 2)}
    for level in report["levels"]:
        assert level["errors"] == 0 and level["tokens"] > 0 and level["tokens_per_second"] > 0
    assert report["prefix"]["prompt_tokens"] > 900
    assert min(report["prefix"]["cached_tokens"]) > 900
    assert "gatehouse@2 / raw-decode@2" in report["ratios"]["2"]
    assert "speed-up" in result.stdout
