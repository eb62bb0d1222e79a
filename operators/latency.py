"""Latency comparison: how much slower (>1) or faster (<1) the other program runs."""
from __future__ import annotations

import numpy as np


def latency_ratio_per_image(ref_latencies, other_latencies) -> np.ndarray:
    """other_i / ref_i for each image (both sequences measured on the same images)."""
    r = _as_latencies(ref_latencies, "ref_latencies")
    o = _as_latencies(other_latencies, "other_latencies")
    if r.shape != o.shape:
        raise ValueError(f"latency_ratio: {r.size} reference latencies but {o.size} others")
    return np.array([_ratio(x, y) for x, y in zip(o, r)], dtype=np.float64)


def latency_ratio(ref_latencies, other_latencies) -> float:
    """median(other) / median(ref); the median resists the odd slow run.

    The two sequences may differ in length. 0/0 gives 1.0, x/0 gives inf.
    """
    r = _as_latencies(ref_latencies, "ref_latencies")
    o = _as_latencies(other_latencies, "other_latencies")
    if r.size == 0 or o.size == 0:
        raise ValueError("latency_ratio: no latencies to compare")
    return _ratio(float(np.median(o)), float(np.median(r)))


def _as_latencies(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    # a latency is a measurement; NaN or a negative time means the timer was wrong
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name}: latencies must be finite and non-negative")
    return arr


def _ratio(num: float, den: float) -> float:
    if den == 0.0:
        return 1.0 if num == 0.0 else float("inf")
    return float(num / den)
