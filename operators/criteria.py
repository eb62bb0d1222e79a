"""Kill criteria: when a mutant's comparison values count as 'killed'.

A criterion names one catalogue metric and a threshold. Its comparison follows the
operator's direction: a higher-is-closer operator kills below the threshold
("kendall_tau < 0.9"), a lower-is-closer one above it ("rel_l2 > 1e-3").
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from operators.catalogue import CATALOGUE, HIGHER_IS_CLOSER

_CRITERION = re.compile(r"^\s*(?P<op>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<cmp>[^\sA-Za-z0-9_.+-]+)\s*(?P<thr>\S.*?)\s*$")


@dataclass(frozen=True)
class KillCriterion:
    """Kill when `metric`'s value is on the far side of `threshold` (or not finite)."""

    metric: str
    threshold: float

    def __post_init__(self):
        if self.metric not in CATALOGUE:
            raise ValueError(f"unknown metric {self.metric!r}; known: {', '.join(CATALOGUE)}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, got {self.threshold!r}")
        object.__setattr__(self, "threshold", float(self.threshold))

    @property
    def comparison(self) -> str:
        """'<' for higher-is-closer operators, '>' for lower-is-closer ones."""
        return "<" if CATALOGUE[self.metric].direction == HIGHER_IS_CLOSER else ">"

    def is_killed(self, values) -> bool:
        """Whether `values` (metric name -> value) meets this criterion."""
        if self.metric not in values:
            raise ValueError(f"kill criterion needs {self.metric!r}, which the values lack")
        value = float(values[self.metric])
        # a NaN/inf summary means an output went non-finite: never a survival
        if not math.isfinite(value):
            return True
        return value < self.threshold if self.comparison == "<" else value > self.threshold

    def met_by_prefix(self, ref_logits, prefix_logits) -> bool:
        """True when the images run so far (``prefix_logits``: the first n rows) already
        kill, whatever the remaining images give: they are counted as equal to the
        reference, the closest an output can be, and every logits metric's summary (a
        mean, a max, or a norm over all images) only moves away from the reference as an
        image's output does. Latency metrics give no such bound (never met)."""
        import numpy as np

        metric = CATALOGUE[self.metric]
        if metric.inputs != "logits":
            return False
        filled = np.array(ref_logits, dtype=np.float32, copy=True)
        filled[: len(prefix_logits)] = prefix_logits
        with np.errstate(all="ignore"):
            return self.is_killed({self.metric: metric.evaluate(ref_logits, filled, None, None, 5)})

    def __str__(self) -> str:
        return f"{self.metric} {self.comparison} {self.threshold:g}"


def parse_criterion(text: str) -> KillCriterion:
    """Parse 'OPERATOR < THRESHOLD' or 'OPERATOR > THRESHOLD' (the side the operator's direction implies)."""
    if not isinstance(text, str):
        raise ValueError(f"kill criterion must be text, got {type(text).__name__}")
    m = _CRITERION.match(text)
    if not m:
        raise ValueError(f"cannot read kill criterion {text!r}; expected e.g. 'top1_agreement < 1.0'")
    op, cmp, thr = m.group("op"), m.group("cmp"), m.group("thr")
    if op not in CATALOGUE:
        raise ValueError(f"unknown operator {op!r} in kill criterion {text!r}; known: {', '.join(CATALOGUE)}")
    direction = CATALOGUE[op].direction
    expected = "<" if direction == HIGHER_IS_CLOSER else ">"
    if cmp not in ("<", ">"):
        raise ValueError(f"bad comparison {cmp!r} in kill criterion {text!r}; use {expected!r} for {op}")
    if cmp != expected:
        raise ValueError(f"bad comparison {cmp!r} in kill criterion {text!r}: {op} is {direction}, "
                         f"so a mutant is killed when it is {expected} the threshold")
    try:
        threshold = float(thr)
    except ValueError:
        raise ValueError(f"bad threshold {thr!r} in kill criterion {text!r}; expected a number") from None
    if not math.isfinite(threshold):
        raise ValueError(f"bad threshold {thr!r} in kill criterion {text!r}; it must be finite")
    return KillCriterion(op, threshold)


DEFAULT_CRITERION = KillCriterion("top1_agreement", 1.0)
