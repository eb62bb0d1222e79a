"""Input checks shared by the comparison operators."""
from __future__ import annotations

import numpy as np


def as_logits(x, name: str = "logits") -> np.ndarray:
    """`x` as a float64 array of shape (N images, C classes); a 1-D vector is one image."""
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected shape (N images, C classes), got {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: no classes (shape {arr.shape})")
    return arr


def logits_pair(ref, other) -> tuple[np.ndarray, np.ndarray]:
    """Both outputs as float64 (N, C) arrays of the same shape."""
    a = as_logits(ref, "ref_logits")
    b = as_logits(other, "other_logits")
    if a.shape != b.shape:
        raise ValueError(f"ref and other outputs differ in shape: {a.shape} vs {b.shape}")
    return a, b


def finite_rows(*arrays: np.ndarray) -> np.ndarray:
    """True for each image whose row is finite in every given array."""
    ok = np.ones(arrays[0].shape[0], dtype=bool)
    for arr in arrays:
        ok &= np.isfinite(arr).all(axis=1)
    return ok


def mean_over_images(per_image: np.ndarray, what: str) -> float:
    """Mean of a per-image array; an empty image set has no meaningful summary."""
    if per_image.size == 0:
        raise ValueError(f"{what}: no images to compare")
    return float(np.mean(per_image))
