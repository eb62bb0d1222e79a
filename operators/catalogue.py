"""The comparison-operator catalogue (the metrics) and `compare_outputs`, which evaluates it.

The catalogue is the single source of truth: `compare_outputs`, the kill criteria, the
engine's table columns and the report's metric list all come from it. A new metric is
one function (in any module) and one `register` call (or one line in `_BUILTIN`).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from operators import distance, latency, ranking

HIGHER_IS_CLOSER = "higher_is_closer"
LOWER_IS_CLOSER = "lower_is_closer"
DIRECTIONS = (HIGHER_IS_CLOSER, LOWER_IS_CLOSER)
# How a report colours a value: unit [0, 1], signed_unit [-1, 1], distance (>= 0, log
# scale), ratio (1 = same), other (no colour scale).
SCALES = ("unit", "signed_unit", "distance", "ratio", "other")
LOGITS, LATENCIES = "logits", "latencies"


@dataclass(frozen=True)
class Metric:
    """One comparison operator: how far another output is from a reference output.

    ``summary(ref, other)`` returns a float. It reads logits ((N, C) arrays) or, when
    ``inputs`` is ``"latencies"``, per-image latencies. A summary that takes a ``k``
    keyword receives the caller's top-k depth. ``per_image``: the same value for each
    image alone (the kill matrix; None: the summary is taken of each image in turn).
    ``monotone``: counting the images not yet run as equal to the reference can only
    bring the summary closer to it (a mean, max or norm over images), so fast kill may stop
    early on it. ``in_tables``: shown in summary tables (`compare`'s terminal table, the
    report's mutant table); every metric is in the CSVs.
    """

    name: str
    summary: Callable[..., float]
    direction: str
    doc: str
    title: str = ""
    scale: str = "other"
    inputs: str = LOGITS
    per_image: Callable[..., np.ndarray] | None = None
    monotone: bool = False
    in_tables: bool = True

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"metric name {self.name!r} must be an identifier (it becomes a column)")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name!r}: direction must be one of {DIRECTIONS}")
        if self.scale not in SCALES:
            raise ValueError(f"metric {self.name!r}: scale must be one of {SCALES}")
        if self.inputs not in (LOGITS, LATENCIES):
            raise ValueError(f"metric {self.name!r}: inputs must be 'logits' or 'latencies'")
        if not self.doc or "\n" in self.doc:
            raise ValueError(f"metric {self.name!r}: doc must be one line")
        if not self.title:
            object.__setattr__(self, "title", self.name)

    def evaluate(self, ref_logits, other_logits, ref_latencies, other_latencies, k: int,
                 params: dict | None = None) -> float:
        """This metric's value for one pair; NaN for a latency metric without latencies.
        ``params``: the summary's own keywords a kill criterion set (``rbo(depth=20)``)."""
        params = dict(params or {})
        if self.inputs == LATENCIES:
            if ref_latencies is None or other_latencies is None:
                return float("nan")
            return float(self.summary(ref_latencies, other_latencies, **params))
        if _takes_k(self.summary):
            params.setdefault("k", k)
        return float(self.summary(ref_logits, other_logits, **params))

    def parameters(self) -> dict:
        """The keywords a kill criterion may set (the summary's, after its two inputs) and
        their defaults: ``topk_overlap(k=10)``, ``rbo(depth=20, p=0.95)``."""
        return metric_parameters(self.summary)

    def describe(self) -> dict:
        """What a run folder records about this metric (reports read it from run.json)."""
        return {"name": self.name, "title": self.title, "direction": self.direction, "scale": self.scale,
                "doc": self.doc, "table": self.in_tables}


def metric_parameters(func) -> dict:
    """A summary function's keyword parameters after its two inputs, with defaults."""
    try:
        params = list(inspect.signature(func).parameters.values())[2:]
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _takes_k(func) -> bool:
    return "k" in metric_parameters(func)


class Catalogue:
    """An ordered, name-keyed table of metrics. Read it like a mapping; extend it with `register`."""

    def __init__(self, metrics):
        self._metrics: dict[str, Metric] = {}
        for metric in metrics:
            self.register(metric)

    def register(self, metric: Metric) -> Metric:
        """Add a metric at the end of the table (a name may be registered once)."""
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name!r} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def unregister(self, name: str) -> None:
        del self._metrics[name]

    def __getitem__(self, name: str) -> Metric:
        return self._metrics[name]

    def __contains__(self, name) -> bool:
        return name in self._metrics

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._metrics))

    def __len__(self) -> int:
        return len(self._metrics)

    def items(self):
        return list(self._metrics.items())

    def values(self) -> list[Metric]:
        return list(self._metrics.values())

    def names(self) -> list[str]:
        return list(self._metrics)

    def describe(self) -> list[dict]:
        return [m.describe() for m in self._metrics.values()]


_BUILTIN = (
    Metric("top1_agreement", ranking.top1_agreement, HIGHER_IS_CLOSER,
           "fraction of images whose top-1 label is unchanged", "Top-1 agr.", "unit",
           per_image=ranking.top1_agreement_per_image, monotone=True),
    Metric("topk_overlap", ranking.topk_overlap, HIGHER_IS_CLOSER,
           "mean |top-k(ref) ∩ top-k(other)| / k, k=5 by default", "Top-k overlap", "unit",
           per_image=ranking.topk_overlap_per_image, monotone=True),
    Metric("kendall_tau", ranking.kendall_tau, HIGHER_IS_CLOSER,
           "mean Kendall's tau-b between full class-score vectors", "Kendall τ", "signed_unit",
           per_image=ranking.kendall_tau_per_image, monotone=True),
    Metric("rbo", ranking.rbo, HIGHER_IS_CLOSER,
           "mean extrapolated rank-biased overlap of label rankings (p=0.9, depth min(C,10))", "RBO", "unit",
           per_image=ranking.rbo_per_image, monotone=True, in_tables=False),
    Metric("max_abs_error", distance.max_abs_error, LOWER_IS_CLOSER,
           "largest absolute logit difference over all images and classes", "Max abs err", "distance",
           per_image=distance.max_abs_error_per_image, monotone=True),
    Metric("rel_l2", distance.rel_l2, LOWER_IS_CLOSER,
           "||other - ref||_2 / ||ref||_2 over the whole logits array", "Rel. L2", "distance",
           per_image=distance.rel_l2_per_image, monotone=True),
    Metric("cosine", distance.cosine, HIGHER_IS_CLOSER,
           "mean cosine similarity of per-image logit vectors", "Cosine", "unit",
           per_image=distance.cosine_per_image, monotone=True),
    Metric("latency_ratio", latency.latency_ratio, LOWER_IS_CLOSER,
           "median(other latency) / median(reference latency)", "Latency ×", "ratio", LATENCIES,
           per_image=latency.latency_ratio_per_image, in_tables=False),
    Metric("max_rel_error", distance.max_rel_error, LOWER_IS_CLOSER,
           "largest absolute logit difference of an image over its largest |logit|, max over images",
           "Max rel err", "distance", per_image=distance.max_rel_error_per_image, monotone=True, in_tables=False),
)

CATALOGUE = Catalogue(_BUILTIN)


def compare_outputs(ref_logits, other_logits, ref_latencies=None, other_latencies=None,
                    k: int = 5) -> dict[str, float]:
    """Every catalogue metric's value for one (reference, other) pair, keyed by name, in
    catalogue order. Latency metrics are NaN when either latency sequence is missing."""
    with np.errstate(all="ignore"):
        return {m.name: m.evaluate(ref_logits, other_logits, ref_latencies, other_latencies, k)
                for m in CATALOGUE.values()}
