"""Operators on the class rankings two outputs induce: top-1, top-k, Kendall's tau, RBO.

Ties between class scores are broken by the lower class index, the same rule as
`numpy.argmax`, so equal outputs always give equal rankings. An image whose row is
not finite in either output counts as full disagreement: a NaN or inf output is
never evidence that the two programs agree.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from operators._arrays import as_logits, finite_rows, logits_pair, mean_over_images

RBO_P = 0.9
RBO_DEFAULT_DEPTH = 10


def topk(logits, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the `k` highest classes per image, best first.

    Returns two (N, min(k, C)) arrays. Ties go to the lower class index.
    """
    x = as_logits(logits)
    k = _check_k(k, x.shape[1])
    # stable sort of the negated scores keeps equal scores in index order
    idx = np.argsort(-x, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(x, idx, axis=1)


def top1_agreement_per_image(ref, other) -> np.ndarray:
    """1.0 where both outputs give the same top-1 label, else 0.0 (non-finite rows: 0.0)."""
    a, b = logits_pair(ref, other)
    same = np.argmax(a, axis=1) == np.argmax(b, axis=1)
    return (same & finite_rows(a, b)).astype(np.float64)


def top1_agreement(ref, other) -> float:
    """Fraction of images whose top-1 label is the same in both outputs."""
    return mean_over_images(top1_agreement_per_image(ref, other), "top1_agreement")


def flipped_images(ref, other) -> np.ndarray:
    """Boolean mask of images whose top-1 label changed (non-finite rows count as changed)."""
    return top1_agreement_per_image(ref, other) == 0.0


def topk_overlap_per_image(ref, other, k: int = 5) -> np.ndarray:
    """|topk(ref) ∩ topk(other)| / k per image, with k capped at the number of classes."""
    a, b = logits_pair(ref, other)
    k = _check_k(k, a.shape[1])
    ia, _ = topk(a, k)
    ib, _ = topk(b, k)
    common = (ia[:, :, None] == ib[:, None, :]).any(axis=2).sum(axis=1)
    return np.where(finite_rows(a, b), common / k, 0.0)


def topk_overlap(ref, other, k: int = 5) -> float:
    """Mean over images of the top-k set overlap."""
    return mean_over_images(topk_overlap_per_image(ref, other, k), "topk_overlap")


def kendall_tau_per_image(ref, other) -> np.ndarray:
    """Kendall's tau-b between the full class-score vectors of each image.

    A constant vector has no ranking: two constant vectors give 1.0 (nothing to
    disagree on), one constant vector gives 0.0 (no association). Non-finite rows
    give -1.0, the largest possible distance.
    """
    a, b = logits_pair(ref, other)
    ok = finite_rows(a, b)
    out = np.full(a.shape[0], -1.0)
    for i in np.flatnonzero(ok):
        const_a = np.ptp(a[i]) == 0
        const_b = np.ptp(b[i]) == 0
        if const_a and const_b:
            out[i] = 1.0
        elif const_a or const_b:
            out[i] = 0.0
        else:
            out[i] = float(stats.kendalltau(a[i], b[i]).statistic)
    return out


def kendall_tau(ref, other) -> float:
    """Mean over images of Kendall's tau-b."""
    return mean_over_images(kendall_tau_per_image(ref, other), "kendall_tau")


def rbo_per_image(ref, other, p: float = RBO_P, depth: int | None = None) -> np.ndarray:
    """Rank-biased overlap (Webber, Moffat & Zobel 2010) of the two label rankings.

    Uses the extrapolated form for two rankings evaluated to the same depth d:
        RBO_ext = (X_d / d) p^d + (1 - p) / p * sum_{k=1..d} (X_k / k) p^k
    where X_k is the number of labels shared by the two top-k lists. Identical
    rankings give 1.0, disjoint ones 0.0. `depth` defaults to min(C, 10); it is
    capped at C. Non-finite rows give 0.0.
    """
    a, b = logits_pair(ref, other)
    if not 0.0 < p < 1.0:
        raise ValueError(f"rbo: p must lie strictly between 0 and 1, got {p}")
    n, c = a.shape
    d = _check_k(RBO_DEFAULT_DEPTH if depth is None else depth, c)
    rank_a = _ranks(a)
    rank_b = _ranks(b)
    # a label joins the overlap at the depth where it has appeared in both lists
    enters = np.minimum(np.maximum(rank_a, rank_b), d)
    counts = np.zeros((n, d + 1))
    np.add.at(counts, (np.repeat(np.arange(n), c), enters.ravel()), 1.0)
    overlap = np.cumsum(counts[:, :d], axis=1)  # overlap[:, k-1] = X_k
    ks = np.arange(1, d + 1)
    weights = p ** ks
    value = overlap[:, -1] / d * p**d + (1 - p) / p * (overlap / ks * weights).sum(axis=1)
    return np.where(finite_rows(a, b), np.clip(value, 0.0, 1.0), 0.0)


def rbo(ref, other, p: float = RBO_P, depth: int | None = None) -> float:
    """Mean over images of the extrapolated rank-biased overlap."""
    return mean_over_images(rbo_per_image(ref, other, p, depth), "rbo")


def accuracy_per_image(logits, labels) -> np.ndarray:
    """1.0 where the top-1 label equals the ground-truth label, else 0.0 (non-finite rows: 0.0)."""
    x = as_logits(logits)
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"accuracy: expected {x.shape[0]} labels, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"accuracy: labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= x.shape[1]):
        raise ValueError(f"accuracy: labels must lie in [0, {x.shape[1]}), got {y.min()}..{y.max()}")
    hit = np.argmax(x, axis=1) == y
    return (hit & finite_rows(x)).astype(np.float64)


def accuracy(logits, labels) -> float:
    """Fraction of images whose top-1 label is the ground-truth label."""
    return mean_over_images(accuracy_per_image(logits, labels), "accuracy")


def _ranks(x: np.ndarray) -> np.ndarray:
    """0-based rank of every class per image (0 = highest score)."""
    order = np.argsort(-x, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(x.shape[1])[None, :].repeat(x.shape[0], 0), axis=1)
    return ranks


def _check_k(k, classes: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return min(int(k), classes)
