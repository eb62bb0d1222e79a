"""The operator catalogue and `compare_outputs`, which evaluates all of it."""
from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping, NamedTuple

import numpy as np

from operators import distance, latency, ranking

HIGHER_IS_CLOSER = "higher_is_closer"
LOWER_IS_CLOSER = "lower_is_closer"


class Operator(NamedTuple):
    """One catalogue entry: summary function, which way is 'closer', one-line description."""

    summary: Callable[..., float]
    direction: str
    doc: str


# Built once and exposed read-only; every logits operator is called as f(ref, other),
# latency_ratio as f(ref_latencies, other_latencies).
CATALOGUE: Mapping[str, Operator] = MappingProxyType({
    "top1_agreement": Operator(ranking.top1_agreement, HIGHER_IS_CLOSER,
                               "fraction of images whose top-1 label is unchanged"),
    "topk_overlap": Operator(ranking.topk_overlap, HIGHER_IS_CLOSER,
                             "mean |top-k(ref) ∩ top-k(other)| / k, k=5 by default"),
    "kendall_tau": Operator(ranking.kendall_tau, HIGHER_IS_CLOSER,
                            "mean Kendall's tau-b between full class-score vectors"),
    "rbo": Operator(ranking.rbo, HIGHER_IS_CLOSER,
                    "mean extrapolated rank-biased overlap of label rankings (p=0.9, depth min(C,10))"),
    "max_abs_error": Operator(distance.max_abs_error, LOWER_IS_CLOSER,
                              "largest absolute logit difference over all images and classes"),
    "rel_l2": Operator(distance.rel_l2, LOWER_IS_CLOSER,
                       "||other - ref||_2 / ||ref||_2 over the whole logits array"),
    "cosine": Operator(distance.cosine, HIGHER_IS_CLOSER,
                       "mean cosine similarity of per-image logit vectors"),
    "latency_ratio": Operator(latency.latency_ratio, LOWER_IS_CLOSER,
                              "median(other latency) / median(reference latency)"),
})

OPERATOR_NAMES: tuple[str, ...] = tuple(CATALOGUE)


def compare_outputs(ref_logits, other_logits, ref_latencies=None, other_latencies=None,
                    k: int = 5) -> dict[str, float]:
    """Every catalogue operator's value for one (reference, other) pair, keyed by name.

    `latency_ratio` is NaN when either latency sequence is missing.
    """
    values = {
        "top1_agreement": ranking.top1_agreement(ref_logits, other_logits),
        "topk_overlap": ranking.topk_overlap(ref_logits, other_logits, k=k),
        "kendall_tau": ranking.kendall_tau(ref_logits, other_logits),
        "rbo": ranking.rbo(ref_logits, other_logits),
        "max_abs_error": distance.max_abs_error(ref_logits, other_logits),
        "rel_l2": distance.rel_l2(ref_logits, other_logits),
        "cosine": distance.cosine(ref_logits, other_logits),
    }
    if ref_latencies is None or other_latencies is None:
        values["latency_ratio"] = float(np.nan)
    else:
        values["latency_ratio"] = latency.latency_ratio(ref_latencies, other_latencies)
    return values
