"""The image search of `mutatenn strengthen`: a seeded, score-based random search in the
raw pixel space of one image file, black-box on two builds.

Each query runs one candidate image (uint8, as it would be written to a PNG) through the
original and the mutant. With ``c`` the label the original gave the seed image, the search
maximises the mutant's gap ``max_{j != c} z_j - z_c`` (positive: the mutant's top-1 is no
longer ``c``) and accepts a candidate only while the original still gives ``c``: the point is
an image the deployed model handles as before and the faulty one does not.

Candidates are the seed image, moved by natural transforms with bounded parameters
(`TRANSFORMS`), plus an L∞-bounded perturbation on the 0..255 scale changed square by square
(the Square attack's proposal: Andriushchenko et al., 2020). Everything random comes from
one `numpy.random.Generator`, so a seed gives the same images again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InputError

MAX_EPSILON = 64  # grey levels: beyond this a perturbation is plainly visible


@dataclass(frozen=True)
class Transform:
    """One natural transform: its parameter's default bound, the largest bound accepted,
    and what the bound means (for --help and errors)."""

    name: str
    default: float
    limit: float
    doc: str


# The single source of truth for --transforms (names, bounds, help text, order applied).
TRANSFORMS: dict[str, Transform] = {t.name: t for t in (
    Transform("rotate", 10.0, 30.0, "rotate by up to ±A degrees"),
    Transform("shift", 0.1, 0.25, "shift by up to ±S of the width and of the height"),
    Transform("blur", 1.0, 3.0, "Gaussian blur of sigma up to R pixels"),
    Transform("contrast", 0.2, 0.5, "scale the deviation from the mean grey by 1±C"),
    Transform("brightness", 0.1, 0.3, "add up to ±B×255 to every pixel"),
    Transform("noise", 8.0, 32.0, "add a fixed Gaussian noise pattern of sigma up to N grey levels"),
)}


class SearchInputError(InputError):
    """An --epsilon, --transforms or --budget value out of range (exit 2)."""


def parse_transforms(text: str | None) -> dict[str, float]:
    """``brightness,rotate=15`` -> {name: bound}; a name alone takes its default bound."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for item in text.split(","):
        name, eq, value = item.strip().partition("=")
        if name not in TRANSFORMS:
            raise SearchInputError(f"--transforms: unknown transform {name!r} (known: {', '.join(TRANSFORMS)})")
        spec = TRANSFORMS[name]
        try:
            bound = float(value) if eq else spec.default
        except ValueError:
            raise SearchInputError(f"--transforms: {name}={value!r} is not a number") from None
        if not 0 < bound <= spec.limit:
            raise SearchInputError(f"--transforms: {name}={bound:g} is out of range (0 < {name} <= {spec.limit:g}: "
                                   f"{spec.doc})")
        if name in out:
            raise SearchInputError(f"--transforms: {name} given twice")
        out[name] = bound
    return out


def check_settings(epsilon: int, transforms: dict[str, float], budget: int, seeds: int) -> None:
    """One SearchInputError line for a setting the search cannot use."""
    if budget < 1:
        raise SearchInputError(f"--budget must be at least 1 query per mutant, not {budget}")
    if seeds < 1:
        raise SearchInputError(f"--seeds must be at least 1, not {seeds}")
    if not 0 <= epsilon <= MAX_EPSILON:
        raise SearchInputError(f"--epsilon must be a whole number of grey levels in 0..{MAX_EPSILON}, not {epsilon}")
    if epsilon == 0 and not transforms:
        raise SearchInputError("--epsilon 0 and no --transforms: the search could not change an image")


@dataclass(frozen=True)
class SearchSettings:
    epsilon: int  # L∞ bound on the 0..255 scale
    transforms: dict = field(default_factory=dict)  # name -> bound
    budget: int = 200  # queries per mutant, over all its seed images


@dataclass
class SeedOutcome:
    """The search from one seed image: the killing image (None: not found) and its cost."""

    image: np.ndarray | None
    queries: int
    original_label: int
    mutant_label: int
    gap: float  # the best mutant gap reached (> 0: killed)
    params: dict = field(default_factory=dict)  # the transform parameters of the image found


Classify = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # uint8 image -> (original, mutant) logits


def gap(logits: np.ndarray, label: int) -> float:
    """How far ``logits`` are from giving ``label`` as top-1 (> 0: another label wins)."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if not np.isfinite(z).all():
        return float("inf") if int(np.argmax(z)) != label else float("-inf")
    others = np.delete(z, label)
    return float(others.max() - z[label])


def search_seed(seed: np.ndarray, label: int, classify: Classify, settings: SearchSettings, budget: int,
                rng: np.random.Generator) -> SeedOutcome:
    """Random search from ``seed`` (uint8) under ``budget`` queries for an image the mutant
    labels otherwise than ``label`` while the original still labels it ``label``."""
    base = seed.astype(np.float32)
    names = list(settings.transforms)
    noise = rng.standard_normal(seed.shape).astype(np.float32) if "noise" in names else None
    params = np.zeros(len(names))
    delta = _initial_delta(seed.shape, settings.epsilon, rng)
    best_gap, best_label, queries = -np.inf, label, 0

    def evaluate(p, d):
        nonlocal queries
        image = compose(base, dict(zip(names, p)), settings.transforms, noise, d)
        original, mutant = classify(image)
        queries += 1
        return image, int(np.argmax(original)) == label, gap(mutant, label), int(np.argmax(mutant))

    image, kept, g, m_label = evaluate(params, delta)
    if not kept:  # the perturbation start already changes the original: start from the seed itself
        delta = np.zeros_like(delta)
        if queries < budget:
            image, kept, g, m_label = evaluate(params, delta)
    if kept:
        best_gap, best_label = g, m_label
    while kept and best_label == label and queries < budget:
        progress = queries / budget
        p, d = params, delta
        if names and (settings.epsilon == 0 or rng.random() < 0.5):
            p = np.clip(params + rng.normal(0.0, 0.5 * (1 - progress) + 0.05, len(names)), -1.0, 1.0)
        else:
            d = _square_step(delta, settings.epsilon, progress, rng)
        candidate, ok, g, m_label = evaluate(p, d)
        if ok and g > best_gap:
            params, delta, image, best_gap, best_label = p, d, candidate, g, m_label
    found = kept and best_label != label
    return SeedOutcome(image if found else None, queries, label, best_label, float(best_gap),
                       {n: round(float(v) * settings.transforms[n], 4) for n, v in zip(names, params)})


def compose(base: np.ndarray, unit_params: dict, bounds: dict, noise: np.ndarray | None,
            delta: np.ndarray) -> np.ndarray:
    """The candidate image: ``base`` through each transform (parameter in -1..1 times its
    bound, in `TRANSFORMS` order), plus ``delta``, rounded and clipped to uint8."""
    from scipy import ndimage

    img = base.astype(np.float32)
    spatial = (0, 1)
    for name in TRANSFORMS:
        if name not in unit_params:
            continue
        v = float(unit_params[name]) * bounds[name]
        if name == "rotate" and v:
            img = ndimage.rotate(img, v, axes=spatial, reshape=False, order=1, mode="nearest")
        elif name == "shift" and v:
            shift = [v * img.shape[0], v * img.shape[1]] + [0] * (img.ndim - 2)
            img = ndimage.shift(img, shift, order=1, mode="nearest")
        elif name == "blur":
            sigma = (v / bounds[name] + 1) / 2 * bounds[name]  # -1..1 -> 0..R
            if sigma > 0.05:
                img = ndimage.gaussian_filter(img, [sigma, sigma] + [0] * (img.ndim - 2))
        elif name == "contrast":
            img = (img - img.mean()) * (1 + v) + img.mean()
        elif name == "brightness":
            img = img + v * 255.0
        elif name == "noise" and noise is not None:
            img = img + v * noise
    return np.clip(np.rint(img + delta), 0, 255).astype(np.uint8)


def _initial_delta(shape: tuple, epsilon: int, rng: np.random.Generator) -> np.ndarray:
    """Vertical stripes of ±epsilon (the Square attack's start for L∞)."""
    if epsilon == 0:
        return np.zeros(shape, np.float32)
    stripes = rng.choice([-epsilon, epsilon], size=(1, shape[1]) + tuple(shape[2:]))
    return np.broadcast_to(stripes, shape).astype(np.float32)


def _square_step(delta: np.ndarray, epsilon: int, progress: float, rng: np.random.Generator) -> np.ndarray:
    """``delta`` with one random square set to ±epsilon per channel; the square shrinks as
    the budget is spent (coarse changes first, then fine ones)."""
    h, w = delta.shape[:2]
    fraction = 0.3 * (1 - progress) + 0.02
    side = int(np.clip(round(np.sqrt(fraction * h * w)), 1, min(h, w)))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    out = delta.copy()
    channels = delta.shape[2:]
    out[top:top + side, left:left + side] = rng.choice([-epsilon, epsilon], size=(1, 1) + channels)
    return out
