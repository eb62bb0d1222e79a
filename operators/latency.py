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


def slower_at_higher_level(entries: list[tuple[str, int, object]], alpha: float = 0.05) -> dict[str, str]:
    """Variants that run slower than a lower optimisation level of the same stack.

    ``entries`` are ``(name, opt level, per-image latencies)`` of variants that differ in
    their opt level only. A higher level is flagged when its median latency is above the
    lower level's and a one-sided Mann-Whitney U test over the per-image latencies says so
    at ``alpha`` (one timed call per image on shared cores is noisy: a median alone is not
    evidence). Returns name -> "slower than NAME (RATIO×, p=P)", against the fastest such
    lower level."""
    import numpy as np
    from scipy.stats import mannwhitneyu

    flags: dict[str, str] = {}
    for name, level, lat in entries:
        worst = None
        for other, other_level, other_lat in entries:
            if other_level >= level:
                continue
            ratio = float(np.median(lat) / np.median(other_lat))
            if ratio <= 1.0:
                continue
            p = float(mannwhitneyu(lat, other_lat, alternative="greater").pvalue)
            if p < alpha and (worst is None or ratio > worst[1]):
                worst = (other, ratio, p)
        if worst is not None:
            flags[name] = f"slower than {worst[0]} ({worst[1]:.2f}x, p={worst[2]:.2g})"
    return flags
