"""Where two variants start to differ: the first aligned layer whose output diverges
beyond a tolerance, found by bisection over the checkpoints (layers every path goes
through) and then a scan of the stretch between the last agreeing checkpoint and the
first diverging one; and the divergence along the whole graph (the curve).

Why checkpoints: when two runs agree at a checkpoint, everything after it depends only on
what comes after, so agreement there means the divergence starts later; a layer off the
chain (a constant-valued ``zeros_like``, one branch of a residual block) may agree while
the computation has already diverged, and would mislead a bisection.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .align import Pair, canonical_values

DEFAULT_TOLERANCE = 1e-4
DEFAULT_PER_ROUND = 8


@dataclass(frozen=True)
class Point:
    """The divergence of one aligned pair on the images localised."""

    pair: Pair
    rel_l2: float
    max_abs: float
    diverges: bool
    round: int  # the round (build of both variants) that read it

    def row(self) -> dict:
        a, b = self.pair.a, self.pair.b
        return {"position": self.pair.position, "layer_a": a.name, "layer_b": b.name, "kind_a": a.kind,
                "kind_b": b.kind, "shape": "x".join(str(d) for d in a.shape), "checkpoint": self.pair.checkpoint,
                "exact": self.pair.exact, "rel_l2": self.rel_l2, "max_abs": self.max_abs, "diverges": self.diverges, "round": self.round}


@dataclass
class Search:
    """What the localisation found and what it cost."""

    first: Point | None  # the first diverging pair (None: the outputs agree within tolerance)
    points: dict[int, Point]  # position -> every pair measured
    checkpoint_rounds: int = 0
    scan_rounds: int = 0
    curve_rounds: int = 0
    last_agreeing: Pair | None = None  # the checkpoint before the divergence (None: the input)
    first_diverging_checkpoint: Pair | None = None
    stretch: list[Pair] = field(default_factory=list)  # pairs scanned between the two

    @property
    def rounds(self) -> int:
        return self.checkpoint_rounds + self.scan_rounds + self.curve_rounds


def measure(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(relative L2 of b against a over every value, max absolute difference): the project's
    own distances (`operators.distance`) on tensors flattened per image; a non-finite value
    (a mutant reading garbage) makes both infinite."""
    from operators.distance import max_abs_error, rel_l2

    if a.size != b.size or a.size == 0:
        return float("inf"), float("inf")
    rows = a.shape[0] if a.ndim > 1 else 1
    x, y = a.reshape(rows, -1), b.reshape(rows, -1)
    return rel_l2(x, y), max_abs_error(x, y)


class Localizer:
    """Reads pairs of layers through two taps, a few per round, and keeps what it measured."""

    def __init__(self, tap_a, tap_b, pairs: list[Pair], rows: list[int], tolerance: float, per_round: int,
                 trim=None):
        """``trim(role, values)``: what a side's values lose before they are compared (a
        background class one side has and the other has not)."""
        self.tap_a, self.tap_b, self.pairs, self.rows = tap_a, tap_b, pairs, rows
        self.tolerance, self.per_round = tolerance, per_round
        self.trim = trim or (lambda role, values: values)
        self.points: dict[int, Point] = {}
        self.round = 0

    def read(self, pairs: list[Pair]) -> list[Point]:
        """Measure ``pairs`` (those not measured yet), ``per_round`` at a time; one round each."""
        todo = [p for p in pairs if p.position not in self.points]
        for start in range(0, len(todo), self.per_round):
            chunk = todo[start : start + self.per_round]
            self.round += 1
            va = self.tap_a.capture([p.a.name for p in chunk], self.rows)
            vb = self.tap_b.capture([p.b.name for p in chunk], self.rows)
            for p in chunk:
                xa, xb = canonical_values(p.a, va[p.a.name]), canonical_values(p.b, vb[p.b.name])
                if xa.shape != xb.shape:
                    xa, xb = self.trim("a", xa), self.trim("b", xb)
                rel, mx = measure(xa, xb)
                self.points[p.position] = Point(p, rel, mx, rel > self.tolerance, self.round)
            for p in chunk:  # read values are not kept: memory stays at one round's tensors
                self.tap_a.cache.pop(p.a.name, None)
                self.tap_b.cache.pop(p.b.name, None)
        return [self.points[p.position] for p in pairs]

    def search(self, full_curve: bool) -> Search:
        """Bisect the checkpoints, scan the stretch where the divergence starts, then (when
        asked) read every remaining pair for the curve."""
        checkpoints = [p for p in self.pairs if p.checkpoint or p is self.pairs[-1]]
        lo, hi = -1, len(checkpoints) - 1  # checkpoint lo agrees (-1: the input), hi diverges
        if not self.read([checkpoints[hi]])[0].diverges:
            result = Search(None, dict(self.points), checkpoint_rounds=self.round)
            return self._curve(result, full_curve)
        while hi - lo > 1:
            inner = list(range(lo + 1, hi))
            step = max(1, len(inner) / self.per_round)
            probe = sorted({inner[min(len(inner) - 1, int(k * step))] for k in range(min(self.per_round, len(inner)))})
            points = self.read([checkpoints[i] for i in probe])
            first = next((i for i, pt in zip(probe, points) if pt.diverges), hi)
            lo = max([lo] + [i for i, pt in zip(probe, points) if not pt.diverges and i < first])
            hi = first
        result = Search(None, {}, checkpoint_rounds=self.round)
        begin = checkpoints[lo].position if lo >= 0 else -1
        result.last_agreeing = checkpoints[lo] if lo >= 0 else None
        result.first_diverging_checkpoint = checkpoints[hi]
        result.stretch = [p for p in self.pairs if begin < p.position <= checkpoints[hi].position]
        scanned = self.read(result.stretch)
        result.scan_rounds = self.round - result.checkpoint_rounds
        result.first = next(pt for pt in scanned if pt.diverges)
        return self._curve(result, full_curve)

    def _curve(self, result: Search, full_curve: bool) -> Search:
        before = self.round
        if full_curve:
            self.read(self.pairs)
        result.curve_rounds = self.round - before
        result.points = dict(sorted(self.points.items()))
        return result
