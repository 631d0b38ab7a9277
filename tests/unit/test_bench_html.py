import random
import re
from html.parser import HTMLParser

import pytest

from gatehouse.bench.html_report import SCATTER_LIMIT, Series, cdf_points, nice_ticks, render_html, subsample, svg_plot
from gatehouse.bench.stats import distribution, percentile

TARGET = "http://127.0.0.1:8080/v1"
VOID = {"meta", "br", "hr", "img", "input", "link", "wbr"}


def _request(i: int, rng: random.Random, tenant: str, start: float) -> dict:
    status = rng.choices([200, 200, 200, 200, 200, 200, 200, 200, 429, 503, 0], k=1)[0]
    ok = status == 200
    ttft = rng.uniform(20, 80) if ok else None
    e2e = ttft + rng.uniform(100, 400) if ok else (rng.uniform(1, 5) if status else None)
    return {
        "i": i, "tenant": tenant, "start_s": start, "status": status,
        "error": None if ok else ("connect: refused" if status == 0 else f"HTTP {status}"),
        "ttft_ms": ttft, "e2e_ms": e2e, "itl_ms": rng.uniform(5, 15) if ok else None,
        "output_tokens": 64 if ok else None, "prompt_tokens": 128, "cold": i == 0,
        "fallbacks": None, "deployment": "mock" if ok else None,
        "gateway_ms": None, "mock_ms": None, "added_ms_mock": rng.uniform(0.5, 2) if ok else None, "added_ms_header": None,
    }


def make_report(n: int = 300, name: str = "steady two tenants") -> dict:
    rng = random.Random(7)
    requests = [_request(i, rng, "alpha" if i % 3 else "beta", i * 30 / n) for i in range(n)]
    ok = [r for r in requests if r["status"] == 200]
    values = {key: [r[key] for r in ok if r[key] is not None] for key in ("ttft_ms", "itl_ms", "e2e_ms", "added_ms_mock")}
    tenants = []
    for tenant, weight in (("alpha", 2.0), ("beta", 1.0)):
        mine = [r for r in requests if r["tenant"] == tenant]
        mine_ok = [r for r in mine if r["status"] == 200]
        tenants.append({"name": tenant, "requests": len(mine), "ok": len(mine_ok), "errors": len(mine) - len(mine_ok),
                        "rate_limited": sum(r["status"] == 429 for r in mine), "throughput_rps": len(mine_ok) / 30,
                        "output_tokens_per_s": 64 * len(mine_ok) / 30, "weight": weight, "normalised_share": 0.97,
                        "ttft_ms": distribution([r["ttft_ms"] for r in mine_ok]), "e2e_ms": distribution([r["e2e_ms"] for r in mine_ok])})
    timeline = [{"t": t, "sent": 10, "completed": 9, "ok": 8, "errors": 1, "output_tokens": 512,
                 "e2e_p50_ms": 250.0, "e2e_p99_ms": 420.0, "ttft_p50_ms": 50.0} for t in range(30)]
    load_curve = [{"label": f"ramp {k}/10", "offered_rps": k * 2.0, "achieved_rps": min(k * 2.0, 12.0),
                   "e2e_p50_ms": 200.0 + k, "e2e_p99_ms": None if k == 5 else 400.0 + k * 10} for k in range(1, 11)]
    errors = [r for r in requests if r["error"]]
    return {
        "gatehouse_bench": 1,
        "scenario": {"name": name, "description": "Two tenants & a <mock>", "file": "scenarios/steady.yaml", "rate": 10},
        "target": TARGET, "started_at": "2024-05-01T12:00:00+00:00", "duration_s": 30.0,
        "slo": {"ttft_ms": 100.0, "itl_ms": None, "e2e_ms": 500.0},
        "summary": {
            "requests": n, "ok": len(ok), "errors": n - len(ok), "rate_limited": sum(r["status"] == 429 for r in requests),
            "error_rate": (n - len(ok)) / n, "rate_limited_rate": sum(r["status"] == 429 for r in requests) / n,
            "fallback_rate": 0.0, "throughput_rps": len(ok) / 30, "output_tokens_per_s": 64 * len(ok) / 30,
            "goodput_rps": len(ok) / 30, "goodput_share": len(ok) / n,
            **{key: distribution(v) for key, v in values.items()}, "added_ms_header": None,
            "jain_fairness": 0.9987, "cold": {"ttft_ms": 812.5, "e2e_ms": 1203.0, "status": 200},
            "errors_by_kind": dict(__import__("collections").Counter(r["error"].split(":")[0] for r in errors)),
        },
        "tenants": tenants, "timeline": timeline, "load_curve": load_curve, "requests": requests,
    }


def empty_report() -> dict:
    summary = {"requests": 0, "ok": 0, "errors": 0, "rate_limited": 0, "error_rate": 0.0, "rate_limited_rate": 0.0,
               "fallback_rate": 0.0, "throughput_rps": 0.0, "output_tokens_per_s": 0.0, "goodput_rps": None,
               "goodput_share": None, "ttft_ms": None, "itl_ms": None, "e2e_ms": None, "added_ms_mock": None,
               "added_ms_header": None, "jain_fairness": None, "cold": None, "errors_by_kind": {}}
    return {"gatehouse_bench": 1, "scenario": {"name": "empty", "description": None, "file": None}, "target": TARGET,
            "started_at": "2024-05-01T12:00:00+00:00", "duration_s": 0.0, "slo": None, "summary": summary,
            "tenants": [], "timeline": [], "load_curve": [], "requests": []}


class Plots(HTMLParser):
    """Checks tags balance and collects, per <svg> (by aria-label), each series' markers and polyline points."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.plots: dict[str, dict] = {}
        self.plot: dict | None = None
        self.series: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "svg":
            self.plot = self.plots.setdefault(a["aria-label"], {"series": {}, "text": []})
        elif tag == "g" and a.get("class") == "series":
            self.series = a["data-series"]
            self.plot["series"][self.series] = {"markers": 0, "line_points": 0}

    def handle_startendtag(self, tag, attrs):
        a = dict(attrs)
        if self.series is None:
            return
        counts = self.plot["series"][self.series]
        if a.get("class") == "pt":
            counts["markers"] += 1
        if tag == "polyline":
            counts["line_points"] += len(a["points"].split())

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag == "g":
            self.series = None
        elif tag == "svg":
            self.plot = None

    def handle_data(self, data):
        if self.plot is not None:
            self.plot["text"].append(data)


def parse(page: str) -> dict[str, dict]:
    parser = Plots()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    return parser.plots


def test_full_document_without_external_assets():
    page = render_html(make_report())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page.lower()
    assert re.findall(r"https?://[^\s<\"']*", page) == [TARGET]
    assert "@import" not in page and "url(" not in page
    parse(page)


def test_user_text_is_escaped():
    report = make_report(name="<script>alert(1)</script>")
    report["requests"][1].update(status=500, error='<img src=x onerror="boom">')
    report["tenants"][0]["name"] = "a&b<i>"
    page = render_html(report)
    assert "<script>" not in page and "<img" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;boom&quot;&gt;" in page
    assert "a&amp;b&lt;i&gt;" in page
    assert "Two tenants &amp; a &lt;mock&gt;" in page
    parse(page)


def test_summary_and_percentile_table():
    report = make_report()
    page = render_html(report)
    p99 = report["summary"]["e2e_ms"]["p99"]
    row = re.search(r"<tr><td>e2e</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td class=num>(.*?)</td>", row)
    assert len(cells) == 8 and cells[5] == f"{p99:,.1f}"
    header_row = re.search(r"<tr><td>added latency \(header\)</td>(.*?)</tr>", page).group(1)
    assert re.findall(r"<td class=num>(.*?)</td>", header_row) == ["-"] * 8
    assert "TTFT ≤ 100.0 ms, e2e ≤ 500.0 ms" in page
    assert "0.999" in page and "812.5 ms" in page  # Jain's index, cold TTFT
    assert "alpha" in page and "beta" in page and "connect" in page


def test_plots_have_the_expected_points():
    report = make_report()
    plots = parse(render_html(report))
    assert set(plots) >= {"Latency over time", "Latency CDF", "Requests per second", "Output tokens per second",
                          "Throughput vs load", "Latency vs load"}
    requests = report["requests"]
    ok = [r for r in requests if r["status"] == 200]
    scatter = plots["Latency over time"]["series"]
    assert scatter["e2e"]["markers"] == scatter["TTFT"]["markers"] == len(ok)
    assert scatter["failed"]["markers"] == len(requests) - len(ok) > 0
    cdf = plots["Latency CDF"]["series"]
    assert cdf["e2e"]["line_points"] == cdf["ITL"]["line_points"] == len(ok)
    per_second = plots["Requests per second"]["series"]
    assert {label: s["line_points"] for label, s in per_second.items()} == {"sent": 30, "completed": 30, "ok": 30}
    assert plots["Output tokens per second"]["series"]["output tokens"]["line_points"] == 30
    load = plots["Throughput vs load"]["series"]
    assert load["achieved"] == {"markers": 10, "line_points": 10}
    assert load["achieved = offered"]["line_points"] == 2
    latency = plots["Latency vs load"]["series"]
    assert latency["e2e p50"] == {"markers": 10, "line_points": 10}
    assert latency["e2e p99"] == {"markers": 9, "line_points": 9}  # a null breaks the line in two
    for plot in plots.values():
        assert "no data" not in plot["text"]


def test_empty_report_renders_no_data():
    page = render_html(empty_report())
    plots = parse(page)
    assert len(plots) == 6
    for plot in plots.values():
        assert "no data" in plot["text"] and plot["series"] == {}
    assert "No errors." in page and "no SLO set" in page


def test_every_request_failed():
    report = make_report(n=40)
    for r in report["requests"]:
        r.update(status=503, error="HTTP 503", ttft_ms=None, e2e_ms=None, itl_ms=None)
    report["summary"].update(ttft_ms=None, e2e_ms=None, itl_ms=None, cold=None)
    plots = parse(render_html(report))
    assert plots["Latency over time"]["series"]["failed"]["markers"] == 40
    assert "no data" in plots["Latency CDF"]["text"]  # failed requests are left out of the CDFs


def test_subsampling_above_the_threshold():
    report = make_report(n=SCATTER_LIMIT * 2 + 1)
    page = render_html(report)
    scatter = parse(page)["Latency over time"]["series"]
    shown = sum(s["markers"] for label, s in scatter.items() if label != "TTFT")
    assert shown == len(report["requests"][::3])
    assert "one request in every 3 is shown" in page
    assert "Subsampled" not in render_html(make_report(n=SCATTER_LIMIT))
    assert subsample(list(range(10)), 4) == ([0, 3, 6, 9], 3)


@pytest.mark.parametrize("lo, hi", [(0, 1), (0.3, 987), (5, 5), (0, 0), (-3, 42), (1e-4, 3e-4), (250, 1e6)])
def test_nice_ticks(lo, hi):
    ticks = nice_ticks(lo, hi)
    assert 3 <= len(ticks) <= 12
    assert ticks[0] <= min(lo, hi) and ticks[-1] >= max(lo, hi) and ticks[-1] > ticks[0]
    steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1
    mantissa = f"{steps.pop():e}"[0]
    assert mantissa in "125"


def test_nice_ticks_values():
    assert nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.3, 987) == [0, 200, 400, 600, 800, 1000]
    assert nice_ticks(5, 5) == [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6]


def test_plot_of_a_single_point_and_of_equal_values():
    one = parse(svg_plot("one", [Series("a", [(3.0, 7.0)], style="scatter")], "x", "y"))["one"]
    assert one["series"]["a"]["markers"] == 1
    flat = parse(svg_plot("flat", [Series("a", [(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)])], "x", "y", y_zero=False))["flat"]
    assert flat["series"]["a"]["line_points"] == 3
    assert "5.0" in flat["text"]


def test_cdf_points():
    assert cdf_points([3.0, None, 1.0, 2.0]) == [(1.0, 1 / 3), (2.0, 2 / 3), (3.0, 1.0)]
    big = cdf_points(float(v) for v in range(10_000))
    assert len(big) == 1000 and big[0] == (0.0, 1e-4) and big[-1] == (9999.0, 1.0)
    assert percentile([v for v, _ in big], 50) == pytest.approx(5000, rel=0.01)
