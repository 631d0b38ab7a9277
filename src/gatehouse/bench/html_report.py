"""One self-contained HTML page for a ``gatehouse bench run`` report.

Everything is inline (CSS, SVG plots); there is no script and no external asset, so the file can be
mailed, attached to a ticket or opened offline. All text taken from the report is escaped: scenario
names, tenants and error messages come from users.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from gatehouse.bench.stats import percentile

SCATTER_LIMIT = 5000  # more requests than this are subsampled in the latency scatter
CDF_LIMIT = 1000  # a CDF is drawn through at most this many quantiles

BLUE, ORANGE, GREEN, RED, PURPLE, GREY = "#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#6b7280"

WIDTH, HEIGHT = 680, 320
LEFT, RIGHT, TOP, BOTTOM = 68, 16, 40, 46

LATENCY_ROWS = (("TTFT", "ttft_ms"), ("ITL", "itl_ms"), ("e2e", "e2e_ms"),
                ("added latency (mock)", "added_ms_mock"), ("added latency (header)", "added_ms_header"))
DIST_COLUMNS = (("count", "count"), ("mean", "mean"), ("p50", "p50"), ("p90", "p90"), ("p95", "p95"),
                ("p99", "p99"), ("p99.9", "p99_9"), ("max", "max"))

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;margin:0 auto;max-width:1440px;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:32px 0 10px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
.sub{color:#4b5563;margin:0 0 16px}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:10px}
.fig{border:1px solid #e5e7eb;border-radius:6px;padding:8px 12px}.fig .k{color:#6b7280;font-size:12px}
.fig .v{font-size:20px;font-weight:600}.fig .n{color:#6b7280;font-size:12px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}th,td{padding:4px 10px;border-bottom:1px solid #e5e7eb}
th{text-align:left;background:#f9fafb}td.num,th.num{text-align:right}
.plots{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{color:#4b5563;font-size:12px;max-width:680px}
svg.plot{background:#fff;border:1px solid #e5e7eb;border-radius:6px}svg text{font:11px system-ui,sans-serif;fill:#374151}
svg .title{font-size:13px;font-weight:600;fill:#111827}svg .grid{stroke:#f3f4f6}svg .axis{stroke:#9ca3af}
svg .nodata{font-size:16px;fill:#9ca3af}pre{background:#f9fafb;padding:12px;overflow:auto}
"""


# -- formatting --------------------------------------------------------------------------------------------------------

def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _failed(request: dict[str, Any]) -> bool:
    # A 200 can still fail (a stream dropped midway, a body that is not JSON): those carry an error.
    return request.get("status") != 200 or request.get("error") is not None


# -- plotting ----------------------------------------------------------------------------------------------------------

@dataclass
class Series:
    label: str
    points: Sequence[tuple[float, float | None]]  # a None y breaks a line
    color: str = BLUE
    style: str = "line"  # "line", "dashed" or "scatter"
    marker: str | None = None  # "dot" or "cross"; a scatter defaults to "dot"


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step)))


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 × 10ⁿ) that cover [lo, hi]; an empty span is widened around its value."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    lo, hi = min(lo, hi), max(lo, hi)
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    digits = _decimals(step)
    return [round(i * step, digits) + 0.0 for i in range(first, last + 1)]  # + 0.0 turns -0.0 into 0.0


def _tick_label(value: float, ticks: Sequence[float]) -> str:
    return f"{value:,.{_decimals(ticks[1] - ticks[0])}f}"


def _scale(ticks: Sequence[float], start: float, end: float):
    lo, hi = ticks[0], ticks[-1]
    return lambda v: start + (v - lo) / (hi - lo) * (end - start)


def _marker(kind: str, x: float, y: float, color: str, css: str = "pt") -> str:
    if kind == "cross":
        return f'<path class="{css}" d="M{x - 3:.1f},{y - 3:.1f}l6,6m0,-6l-6,6" stroke="{color}" stroke-width="1.5"/>'
    return f'<circle class="{css}" cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{color}" fill-opacity="0.65"/>'


def _segments(points: Iterable[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    segments: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            segments.append([])
        else:
            segments[-1].append((x, y))
    return [segment for segment in segments if segment]


def _draw_series(series: Series, sx, sy) -> str:
    parts = [f'<g class="series" data-series="{escape(series.label)}">']
    if series.style != "scatter":
        dash = ' stroke-dasharray="6 4"' if series.style == "dashed" else ""
        for segment in _segments(series.points):
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in segment)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{series.color}" stroke-width="1.6"{dash}/>')
            if len(segment) == 1 and not series.marker:  # a lone point draws no line: show it anyway
                parts.append(_marker("dot", sx(segment[0][0]), sy(segment[0][1]), series.color, css="lone"))
    marker = series.marker or ("dot" if series.style == "scatter" else None)
    if marker:
        parts.extend(_marker(marker, sx(x), sy(y), series.color) for x, y in series.points if y is not None)
    parts.append("</g>")
    return "".join(parts)


def _legend(series: Sequence[Series]) -> str:
    parts: list[str] = []
    x: float = LEFT  # advances by a fractional width per label
    for s in series:
        y = TOP - 12
        if s.style == "scatter":
            swatch = _marker(s.marker or "dot", x + 9, y, s.color, css="key")
        else:
            dash = ' stroke-dasharray="6 4"' if s.style == "dashed" else ""
            swatch = f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{s.color}" stroke-width="2"{dash}/>'
            if s.marker:
                swatch += _marker(s.marker, x + 9, y, s.color, css="key")
        parts.append(f'{swatch}<text x="{x + 24}" y="{y + 4}">{escape(s.label)}</text>')
        x += 36 + 6.5 * len(s.label)
    return "".join(parts)


def _axes(xt: Sequence[float], yt: Sequence[float], sx, sy) -> str:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    parts = []
    for v in yt:
        y = sy(v)
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick_label(v, yt)}</text>')
    for v in xt:
        x = sx(v)
        parts.append(f'<line class="axis" x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}"/>'
                     f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{_tick_label(v, xt)}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
                 f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>')
    return "".join(parts)


def svg_plot(title: str, series: Sequence[Series], x_label: str, y_label: str, *, x_zero: bool = False, y_zero: bool = True) -> str:
    """A line/scatter chart on linear axes with round ticks and a legend; "no data" when no series has a point."""
    points = [(x, y) for s in series for x, y in s.points if y is not None and math.isfinite(x) and math.isfinite(y)]
    bottom = HEIGHT - BOTTOM
    head = (f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{escape(title)}"><text class="title" x="{LEFT}" y="16">{escape(title)}</text>'
            f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}</text>'
            f'<text transform="translate(14,{(TOP + bottom) / 2}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>')
    if not points:
        return (f'{head}<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{bottom - TOP}" fill="none" '
                f'stroke="#e5e7eb"/><text class="nodata" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{(TOP + bottom) / 2}" '
                f'text-anchor="middle">no data</text></svg>')
    xs, ys = [x for x, _ in points], [y for _, y in points]
    xt = nice_ticks(min(xs + [0.0] * x_zero), max(xs))
    yt = nice_ticks(min(ys + [0.0] * y_zero), max(ys))
    sx, sy = _scale(xt, LEFT, WIDTH - RIGHT), _scale(yt, bottom, TOP)
    body = "".join(_draw_series(s, sx, sy) for s in series)
    return f"{head}{_axes(xt, yt, sx, sy)}{body}{_legend(series)}</svg>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


# -- the four plots ----------------------------------------------------------------------------------------------------

def subsample(items: Sequence[Any], limit: int = SCATTER_LIMIT) -> tuple[Sequence[Any], int]:
    """Every k-th item, with the smallest k that keeps at most ``limit``; returns (items, k)."""
    step = max(1, math.ceil(len(items) / limit))
    return items[::step], step


def _latency_scatter(requests: Sequence[dict[str, Any]]) -> str:
    sample, step = subsample(requests)
    ok = [r for r in sample if not _failed(r)]
    failed = [r for r in sample if _failed(r)]
    series = [
        Series("e2e", [(r["start_s"], r.get("e2e_ms")) for r in ok], BLUE, "scatter"),
        Series("TTFT", [(r["start_s"], r.get("ttft_ms")) for r in ok], ORANGE, "scatter"),
        Series("failed", [(r["start_s"], r.get("e2e_ms") or 0.0) for r in failed], RED, "scatter", marker="cross"),
    ]
    caption = ("Each request's latency against when it was sent. Failed requests are red crosses, at their e2e latency "
               "or on the x axis when they have none.")
    if step > 1:
        caption += f" Subsampled: one request in every {step} is shown ({len(sample):,} of {len(requests):,})."
    return _figure(svg_plot("Latency over time", series, "seconds since start", "ms"), caption)


def cdf_points(values: Iterable[float | None], limit: int = CDF_LIMIT) -> list[tuple[float, float]]:
    ordered = sorted(v for v in values if v is not None and math.isfinite(v))
    n = len(ordered)
    indices = range(n) if n <= limit else sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [(ordered[i], (i + 1) / n) for i in indices]


def _cdfs(requests: Sequence[dict[str, Any]]) -> str:
    # Failed requests are left out: a fast 429 or 503 would pull the curve left and flatter the server.
    ok = [r for r in requests if not _failed(r)]
    series = [Series(label, cdf_points(r.get(key) for r in ok), color)
              for label, key, color in (("TTFT", "ttft_ms", ORANGE), ("ITL", "itl_ms", GREEN), ("e2e", "e2e_ms", BLUE))]
    caption = "Share of successful requests at or below each latency (requests without the measure are left out)."
    return _figure(svg_plot("Latency CDF", series, "ms", "share of requests"), caption)


def _throughput(timeline: Sequence[dict[str, Any]]) -> str:
    requests = [Series(label, [(row["t"], row.get(key)) for row in timeline], color)
                for label, key, color in (("sent", "sent", GREY), ("completed", "completed", BLUE), ("ok", "ok", GREEN))]
    tokens = [Series("output tokens", [(row["t"], row.get("output_tokens")) for row in timeline], PURPLE)]
    return (_figure(svg_plot("Requests per second", requests, "seconds since start", "requests / s"),
                    "Requests sent, completed and completed without error in each second of the run.")
            + _figure(svg_plot("Output tokens per second", tokens, "seconds since start", "tokens / s"),
                      "Output tokens of the requests that completed without error in each second."))


def _load(curve: Sequence[dict[str, Any]]) -> str:
    achieved = [Series("achieved", [(row["offered_rps"], row["achieved_rps"]) for row in curve], BLUE, marker="dot")]
    if curve:
        top = max(max(row["offered_rps"], row["achieved_rps"]) for row in curve)
        achieved.append(Series("achieved = offered", [(0.0, 0.0), (top, top)], GREY, "dashed"))
    latency = [Series(label, [(row["offered_rps"], row.get(key)) for row in curve], color, marker="dot")
               for label, key, color in (("e2e p50", "e2e_p50_ms", BLUE), ("e2e p99", "e2e_p99_ms", RED))]
    return (_figure(svg_plot("Throughput vs load", achieved, "offered requests / s", "achieved requests / s", x_zero=True),
                    "Requests completed without error against requests sent, per load window; the dashed line is a "
                    "server that keeps up.")
            + _figure(svg_plot("Latency vs load", latency, "offered requests / s", "ms", x_zero=True),
                      "Median and p99 e2e latency of successful requests in each load window."))


# -- tables and figures ------------------------------------------------------------------------------------------------

def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 1) -> str:
    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(f'<{tag}{" class=num" if i >= numeric_from else ""}>{v}</{tag}>' for i, v in enumerate(values))

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', [escape(h) for h in headers])}</tr></thead><tbody>{body}</tbody></table>"


def _dist_cells(dist: dict[str, Any] | None) -> list[str]:
    dist = dist or {}
    return [_num(dist.get(key), 0) if key == "count" else _ms(dist.get(key)) for _, key in DIST_COLUMNS]


def _percentile_table(summary: dict[str, Any]) -> str:
    rows = [[escape(label), *_dist_cells(summary.get(key))] for label, key in LATENCY_ROWS]
    return _table(["ms", *(name for name, _ in DIST_COLUMNS)], rows)


def _tenant_table(tenants: Sequence[dict[str, Any]]) -> str:
    if not tenants:
        return "<p>No tenants.</p>"
    headers = ["tenant", "weight", "requests", "ok", "errors", "429", "req/s", "tokens/s", "normalised share",
               "TTFT p50", "TTFT p99", "e2e p50", "e2e p99"]
    rows = []
    for t in tenants:
        ttft, e2e = t.get("ttft_ms") or {}, t.get("e2e_ms") or {}
        rows.append([escape(str(t.get("name"))), _num(t.get("weight"), 2), _num(t.get("requests"), 0), _num(t.get("ok"), 0),
                     _num(t.get("errors"), 0), _num(t.get("rate_limited"), 0), _num(t.get("throughput_rps"), 2),
                     _num(t.get("output_tokens_per_s")), _num(t.get("normalised_share"), 3),
                     _ms(ttft.get("p50")), _ms(ttft.get("p99")), _ms(e2e.get("p50")), _ms(e2e.get("p99"))])
    return _table(headers, rows)


def _errors(summary: dict[str, Any], requests: Sequence[dict[str, Any]]) -> str:
    by_kind = summary.get("errors_by_kind") or {}
    if not by_kind:
        return "<p>No errors.</p>"
    kinds = _table(["kind", "count"], ([escape(str(k)), _num(n, 0)] for k, n in sorted(by_kind.items(), key=lambda kv: -kv[1])))
    messages = Counter(str(r["error"])[:300] for r in requests if r.get("error") is not None).most_common(10)
    if not messages:
        return kinds
    return kinds + "<h3>Most frequent messages</h3>" + _table(["message", "count"], ([escape(m), _num(n, 0)] for m, n in messages))


def _slo_text(slo: dict[str, Any] | None) -> str | None:
    limits = [f"{label} ≤ {_ms(slo[key])} ms" for label, key in (("TTFT", "ttft_ms"), ("ITL", "itl_ms"), ("e2e", "e2e_ms"))
              if slo and slo.get(key) is not None]
    return ", ".join(limits) or None


def _cold_figure(cold: dict[str, Any] | None, requests: Sequence[dict[str, Any]]) -> tuple[str, str]:
    if not cold:
        return "-", "no cold request"
    warm = [r for r in requests if not r.get("cold") and not _failed(r)]
    warm_ttft = percentile([r["ttft_ms"] for r in warm if r.get("ttft_ms") is not None], 50)
    warm_e2e = percentile([r["e2e_ms"] for r in warm if r.get("e2e_ms") is not None], 50)
    note = (f"e2e {_ms(cold.get('e2e_ms'))} ms vs warm p50 {_ms(warm_e2e)} ms; TTFT warm p50 {_ms(warm_ttft)} ms; "
            f"status {cold.get('status') if cold.get('status') is not None else '-'}")
    return f"{_ms(cold.get('ttft_ms'))} ms", note


def _key_figures(report: dict[str, Any]) -> str:
    summary, requests = report.get("summary") or {}, report.get("requests") or []
    slo = _slo_text(report.get("slo"))
    goodput = ("-", "no SLO set") if slo is None else (
        f"{_num(summary.get('goodput_rps'), 2)} req/s", f"{_pct(summary.get('goodput_share'))} of requests within {slo}")
    figures = [
        ("requests", _num(summary.get("requests"), 0),
         f"{_num(summary.get('ok'), 0)} ok, {_num(summary.get('errors'), 0)} errors in {_num(report.get('duration_s'))} s"),
        ("throughput", f"{_num(summary.get('throughput_rps'), 2)} req/s", "completed without error"),
        ("output tokens", f"{_num(summary.get('output_tokens_per_s'))} /s", "of successful requests"),
        ("goodput", *goodput),
        ("error rate", _pct(summary.get("error_rate")), f"{_num(summary.get('errors'), 0)} requests"),
        ("429 rate", _pct(summary.get("rate_limited_rate")), f"{_num(summary.get('rate_limited'), 0)} requests rate limited"),
        ("fallback rate", _pct(summary.get("fallback_rate")), "answered by a fallback deployment"),
        ("Jain's fairness", _num(summary.get("jain_fairness"), 3), "1 = every tenant got its fair share"),
        ("cold start TTFT", *_cold_figure(summary.get("cold"), requests)),
    ]
    cards = "".join(f'<div class="fig"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div>'
                    f'<div class="n">{escape(n)}</div></div>' for k, v, n in figures)
    return f'<div class="figs">{cards}</div>'


def _notes(notes: Any) -> str:
    if not notes:
        return ""
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{escape(str(note))}</li>" for note in notes) + "</ul>"


# -- the page ----------------------------------------------------------------------------------------------------------

def render_html(report: dict) -> str:
    """The whole report as one HTML document, with no script and nothing fetched from elsewhere."""
    scenario = report.get("scenario") or {}
    summary = report.get("summary") or {}
    requests = report.get("requests") or []
    name = str(scenario.get("name") or "unnamed scenario")
    description = f"<p>{escape(str(scenario['description']))}</p>" if scenario.get("description") else ""
    subtitle = f"{report.get('target') or '-'} · started {report.get('started_at') or '-'} · {_num(report.get('duration_s'))} s"
    scenario_json = json.dumps(scenario, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>gatehouse bench: {escape(name)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(name)}</h1><p class=sub>{escape(subtitle)}</p>{description}",
        "<h2>Summary</h2>", _key_figures(report), _notes(report.get("notes")),
        "<h2>Latency percentiles</h2>", _percentile_table(summary),
        "<p class=sub>Warm requests that succeeded; the cold first request is in the summary above.</p>",
        "<h2>Tenants</h2>", _tenant_table(report.get("tenants") or []),
        "<h2>Errors</h2>", _errors(summary, requests),
        '<h2>Plots</h2><div class="plots">',
        _latency_scatter(requests), _cdfs(requests),
        _throughput(report.get("timeline") or []), _load(report.get("load_curve") or []),
        "</div>",
        f"<h2>Scenario</h2><details><summary>{escape(name)} (as run)</summary><pre>{escape(scenario_json)}</pre></details>",
        "</body></html>\n",
    ])
