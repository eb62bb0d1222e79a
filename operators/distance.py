"""Numeric distances between two outputs: max absolute error, relative L2, cosine.

A non-finite row (in either output) gives the largest distance the measure has:
inf for the errors, -1.0 for the cosine similarity.
"""
from __future__ import annotations

import numpy as np

from operators._arrays import finite_rows, logits_pair, mean_over_images


def max_abs_error_per_image(ref, other) -> np.ndarray:
    """max_c |other - ref| per image."""
    a, b = logits_pair(ref, other)
    ok = finite_rows(a, b)
    err = np.full(a.shape[0], np.inf)
    err[ok] = np.abs(b[ok] - a[ok]).max(axis=1)
    return err


def max_abs_error(ref, other) -> float:
    """Largest absolute difference over all images and classes (a max, not a mean)."""
    per_image = max_abs_error_per_image(ref, other)
    if per_image.size == 0:
        raise ValueError("max_abs_error: no images to compare")
    return float(per_image.max())


def max_rel_error_per_image(ref, other) -> np.ndarray:
    """max_c |other - ref| / max_c |ref| per image (the largest error relative to the
    image's largest logit; 0/0 gives 0.0, x/0 gives inf)."""
    a, b = logits_pair(ref, other)
    ok = finite_rows(a, b)
    out = np.full(a.shape[0], np.inf)
    for i in np.flatnonzero(ok):
        err, peak = np.abs(b[i] - a[i]).max(), np.abs(a[i]).max()
        out[i] = 0.0 if err == 0 else (err / peak if peak > 0 else np.inf)
    return out


def max_rel_error(ref, other) -> float:
    """Largest per-image error relative to that image's largest logit (a max over images)."""
    per_image = max_rel_error_per_image(ref, other)
    if per_image.size == 0:
        raise ValueError("max_rel_error: no images to compare")
    return float(per_image.max())


def rel_l2_per_image(ref, other) -> np.ndarray:
    """||other - ref||_2 / ||ref||_2 per image (0/0 gives 0.0, x/0 gives inf)."""
    a, b = logits_pair(ref, other)
    ok = finite_rows(a, b)
    out = np.full(a.shape[0], np.inf)
    out[ok] = [_relative_norm(b[i] - a[i], a[i]) for i in np.flatnonzero(ok)]
    return out


def rel_l2(ref, other) -> float:
    """||other - ref||_2 / ||ref||_2 over the whole (N, C) array, not a mean of rows."""
    a, b = logits_pair(ref, other)
    if a.shape[0] == 0:
        raise ValueError("rel_l2: no images to compare")
    if not finite_rows(a, b).all():
        return float("inf")
    return _relative_norm(b - a, a)


def cosine_per_image(ref, other) -> np.ndarray:
    """Cosine similarity of the two score vectors per image, in [-1, 1].

    Two zero vectors give 1.0 (identical), one zero vector gives 0.0.
    """
    a, b = logits_pair(ref, other)
    ok = finite_rows(a, b)
    out = np.full(a.shape[0], -1.0)
    for i in np.flatnonzero(ok):
        ua, ub = _unit(a[i]), _unit(b[i])
        if ua is None and ub is None:
            out[i] = 1.0
        elif ua is None or ub is None:
            out[i] = 0.0
        else:
            out[i] = float(np.dot(ua, ub))
    return np.clip(out, -1.0, 1.0)


def cosine(ref, other) -> float:
    """Mean over images of the cosine similarity."""
    return mean_over_images(cosine_per_image(ref, other), "cosine")


def _relative_norm(diff: np.ndarray, ref: np.ndarray) -> float:
    """||diff|| / ||ref||, scaled so that large finite logits do not overflow to inf/inf."""
    if not np.isfinite(diff).all():  # the subtraction itself overflowed
        return float("inf")
    sd, sr = np.abs(diff).max(), np.abs(ref).max()
    if sr == 0.0:
        return 0.0 if sd == 0.0 else float("inf")
    if sd == 0.0:
        return 0.0
    return float(np.linalg.norm(diff / sd) / np.linalg.norm(ref / sr) * (sd / sr))


def _unit(x: np.ndarray) -> np.ndarray | None:
    """x / ||x||, or None for the zero vector; scaled first so the norm cannot overflow."""
    s = np.abs(x).max()
    if s == 0.0:
        return None
    y = x / s
    return y / np.linalg.norm(y)
