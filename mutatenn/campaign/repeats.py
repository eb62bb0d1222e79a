"""The verdict over a build's repeated inference passes (``[run] verdict``).

With ``repeats = N`` every build runs its images N times (in its worker, or pass by pass
in fresh processes: ``[run] repeat_in``). A build that reads memory it does not own can
give other outputs in each pass, so one pass's kill may be chance. `PASS_VERDICTS` is the
table of ways to turn N passes into one verdict; each entry is one function of the same
shape, so a new way is one function plus one line:

- ``first``: the first pass decides (the other passes only flag the build unstable);
- ``majority``: killed when more than half of the passes meet the kill criterion;
- ``statistical``: killed when the mutant's values over its passes differ significantly
  from the original's own pass-to-pass variation (one-sided Mann-Whitney U, p below
  ``significance``) with a large enough effect (Vargha-Delaney A12 at least
  ``effect_size``), and the criterion holds on their median. Each term of a combined
  criterion is tested on its own metric, and the terms combine by ``and``/``or`` as in
  the criterion. The original's noise is its passes 2..N against its pass 1, so a
  deterministic original gives a noise of exactly zero, and a non-deterministic one
  raises the bar by as much as it moves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# A12 of 0.71 is the threshold Vargha and Delaney call a large effect.
DEFAULT_SIGNIFICANCE, DEFAULT_EFFECT_SIZE = 0.05, 0.71


@dataclass(frozen=True)
class PassSettings:
    """How a campaign judges repeated passes (from ``[run]``)."""

    method: str = "first"
    significance: float = DEFAULT_SIGNIFICANCE
    effect_size: float = DEFAULT_EFFECT_SIZE


@dataclass(frozen=True)
class PassJudgement:
    """One pair's verdict over its passes: killed or not, how many passes met the
    criterion on their own, and the line that explains it."""

    killed: bool
    passes_killed: int
    passes: int
    note: str


def _kills(criterion, mutant: list[dict]) -> list[bool]:
    return [bool(criterion.is_killed(values)) for values in mutant]


def first_pass(criterion, mutant: list[dict], original: list[dict], settings: PassSettings) -> PassJudgement:
    """The first pass decides; the count of passes that kill is there for the reader."""
    kills = _kills(criterion, mutant)
    return PassJudgement(kills[0], sum(kills), len(kills), f"killed in {sum(kills)} of {len(kills)} passes (first)")


def majority(criterion, mutant: list[dict], original: list[dict], settings: PassSettings) -> PassJudgement:
    """More than half of the passes must kill: a kill that comes and goes is not one."""
    kills = _kills(criterion, mutant)
    killed = 2 * sum(kills) > len(kills)
    return PassJudgement(killed, sum(kills), len(kills), f"killed in {sum(kills)} of {len(kills)} passes (majority)")


def statistical(criterion, mutant: list[dict], original: list[dict], settings: PassSettings) -> PassJudgement:
    """Killed when every needed term of the criterion differs from the original's noise
    significantly and by a large effect (see the module's docstring)."""
    kills = _kills(criterion, mutant)
    notes: list[str] = []
    killed = _term_met(criterion, mutant, original, settings, notes)
    head = f"killed in {sum(kills)} of {len(kills)} passes; "
    return PassJudgement(killed, sum(kills), len(kills), head + "; ".join(notes) + " (statistical)")


@dataclass(frozen=True)
class PassVerdict:
    """One way of making a verdict out of N passes: its judge, the least number of passes
    that gives it a meaning (a majority of two is a unanimity; with 3 passes no exact
    one-sided U test reaches p < 0.05, 1/C(5,2) = 0.1), and its line in reports."""

    name: str
    judge: Callable[..., PassJudgement]
    min_passes: int
    text: str


# The one table of verdicts over passes (`[run] verdict`); a new one is a function and a line.
PASS_VERDICTS: dict[str, PassVerdict] = {v.name: v for v in (
    PassVerdict("first", first_pass, 1, "the first pass decides the verdict"),
    PassVerdict("majority", majority, 3, "killed when more than half of the passes kill"),
    PassVerdict("statistical", statistical, 4,
                "killed when the passes differ from the original's own pass-to-pass variation "
                "(one-sided Mann-Whitney U p < {significance:g}, Vargha-Delaney A12 >= {effect_size:g}) "
                "and the criterion holds on their median"),
)}


def describe(settings: PassSettings) -> str:
    """One line for reports: how this campaign's passes make a verdict."""
    return PASS_VERDICTS[settings.method].text.format(significance=settings.significance,
                                                      effect_size=settings.effect_size)


def judge_passes(criterion, mutant: list[dict], original: list[dict], settings: PassSettings) -> PassJudgement:
    """``mutant``: the judged values of each mutant pass against the original's first pass;
    ``original``: the original's passes 2..N against its first (its noise)."""
    return PASS_VERDICTS[settings.method].judge(criterion, mutant, original, settings)


def _term_met(term, mutant, original, settings: PassSettings, notes: list[str]) -> bool:
    """A combination (``and``/``or``) is met as its parts are; a single term by `_significant`."""
    parts = getattr(term, "parts", None)
    if parts is not None:
        return term.combine([_term_met(p, mutant, original, settings, notes) for p in parts])
    return _significant(term, mutant, original, settings, notes)


def _significant(term, mutant, original, settings: PassSettings, notes: list[str]) -> bool:
    """One term: the criterion holds on the mutant's median, and its values lie on the
    killing side of the original's noise (U test p, A12 effect)."""
    from scipy.stats import mannwhitneyu

    greater = term.comparison in (">", ">=")
    x = _finite_side([v[term.key] for v in mutant], greater)
    y = _finite_side([v[term.key] for v in original], greater)
    median = float(np.median(x))
    holds = bool(term.is_killed({term.key: median}))
    if len(y) == 0 or np.all(np.concatenate([x, y]) == x[0]):
        p = 1.0  # no variation at all: nothing to tell apart
    else:
        p = float(mannwhitneyu(x, y, alternative="greater" if greater else "less").pvalue)
    a12 = _a12(x, y, greater)
    met = holds and p < settings.significance and a12 >= settings.effect_size
    notes.append(f"{term.key}: median {median:.6g} vs original {float(np.median(y)) if len(y) else float('nan'):.6g},"
                 f" p = {p:.3g}, A12 = {a12:.2f}")
    return met


def _finite_side(values, greater: bool) -> np.ndarray:
    """Non-finite values (a NaN summary: an output went non-finite) count as the farthest
    possible on the killing side, as `KillCriterion` counts them."""
    arr = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(arr), arr, np.inf if greater else -np.inf)


def _a12(x: np.ndarray, y: np.ndarray, greater: bool) -> float:
    """Vargha-Delaney A12: the chance that a mutant pass lies farther on the killing side
    than an original pass (ties count half)."""
    if len(y) == 0:
        return 0.5
    xs, ys = x[:, None], y[None, :]
    if not greater:
        xs, ys = -xs, -ys
    with np.errstate(invalid="ignore"):
        wins = (xs > ys).sum() + 0.5 * (xs == ys).sum()
    return float(wins / (len(x) * len(y)))
