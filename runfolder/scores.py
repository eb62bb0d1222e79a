"""The mutation score's interval as scores.csv records it (``score_low``, ``score_high``):
the engine writes it and the report recomputes it for older run folders, so both take it
from here."""
from __future__ import annotations

CONFIDENCE = 0.95


def wilson_interval(killed: int, scored: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval of the mutation score killed / scored, in percent (None
    when nothing was scored): a binomial interval, so it says how far the score of the
    judged mutants may be from the kill rate of the population they were drawn from."""
    if scored <= 0:
        return None
    if not 0 <= killed <= scored:
        raise ValueError(f"killed must lie in 0..{scored}, got {killed}")
    from scipy.stats import binomtest

    interval = binomtest(int(killed), int(scored)).proportion_ci(confidence_level=confidence, method="wilson")
    # At 0 or every mutant killed an end is exactly 0 or 1; rounding would leave 1e-15.
    low = 0.0 if killed == 0 else max(0.0, float(interval.low))
    high = 1.0 if killed == scored else min(1.0, float(interval.high))
    return 100.0 * low, 100.0 * high
