"""Small, exact statistics for benchmark reports."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    return _sorted_percentile(sorted(values), q)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b


PERCENTILES = (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p99_9", 99.9))


def distribution(values: Sequence[float]) -> dict[str, float] | None:
    """count, mean, min, max and the report's percentiles; None when there is nothing to describe."""
    if not values:
        return None
    ordered = sorted(values)
    summary: dict[str, float] = {"count": len(ordered), "mean": math.fsum(ordered) / len(ordered),
                                 "min": ordered[0], "max": ordered[-1]}
    for name, q in PERCENTILES:
        summary[name] = _sorted_percentile(ordered, q)
    return summary


def _sorted_percentile(ordered: Sequence[float], q: float) -> float:
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def jain_index(values: Sequence[float]) -> float | None:
    """Jain's fairness index (Σx)² / (n·Σx²): 1 when all are equal, 1/n when one takes all."""
    if not values:
        return None
    squares = math.fsum(x * x for x in values)
    if squares == 0:
        return None
    return math.fsum(values) ** 2 / (len(values) * squares)


def max_min_fair(demands: Sequence[float], weights: Sequence[float], capacity: float) -> list[float]:
    """Weighted max-min fair shares of ``capacity`` (water-filling): nobody gets more than they
    ask for, and what the modest leave is split among the rest in proportion to their weights."""
    shares = [0.0] * len(demands)
    active = [i for i, demand in enumerate(demands) if demand > 0]
    left = capacity
    while active and left > 1e-12:
        total_weight = math.fsum(weights[i] for i in active)
        per_weight = left / total_weight
        satisfied = [i for i in active if demands[i] - shares[i] <= per_weight * weights[i] + 1e-12]
        if not satisfied:
            for i in active:
                shares[i] += per_weight * weights[i]
            break
        for i in satisfied:
            left -= demands[i] - shares[i]
            shares[i] = float(demands[i])
        active = [i for i in active if i not in satisfied]
    return shares


def fairness(achieved: Sequence[float], demands: Sequence[float], weights: Sequence[float]) -> tuple[float | None, list[float | None]]:
    """Jain's index over each tenant's achieved throughput relative to its max-min fair share of
    what was achieved in total (Jain, Chiu & Hawe 1984, with x_i = T_i / O_i)."""
    fair = max_min_fair(demands, weights, math.fsum(achieved))
    normalised = [a / f if f > 0 else None for a, f in zip(achieved, fair, strict=True)]
    present = [x for x in normalised if x is not None]
    return jain_index(present), normalised
