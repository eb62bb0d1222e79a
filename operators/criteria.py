"""Kill criteria: when a mutant's comparison values count as 'killed'.

A term names one catalogue metric and a threshold. Its comparison follows the
operator's direction: a higher-is-closer operator kills below the threshold
("kendall_tau < 0.9"), a lower-is-closer one above it ("rel_l2 > 1e-3"). Two counts that
are not catalogue metrics are terms too (`COUNT_TERMS`): ``flipped >= N`` (images whose
top-1 label changed) and ``accuracy_drop > D`` (the original's accuracy minus the
mutant's on labelled images, 0..1). Terms combine with ``and`` / ``or`` (``and`` binds
tighter): "flipped >= 2 or rel_l2 > 1e-2".
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from operators.catalogue import CATALOGUE, HIGHER_IS_CLOSER

_CRITERION = re.compile(r"^\s*(?P<op>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\((?P<params>[^()]*)\))?\s*"
                        r"(?P<cmp>[^\sA-Za-z0-9_.+-]+)\s*(?P<thr>\S.*?)\s*$")


def _flipped(ref_logits, out_logits, truth=None) -> float:
    from operators import flipped_images

    return float(flipped_images(ref_logits, out_logits).sum())


def _accuracy_drop(ref_logits, out_logits, truth=None) -> float:
    """The original's top-1 accuracy minus the mutant's (NaN without labels)."""
    from operators import accuracy

    if truth is None:
        return float("nan")
    return float(accuracy(ref_logits, truth) - accuracy(out_logits, truth))


def _flipped_per_image(ref_logits, out_logits, threshold: float):
    """One image flips at most once: it alone meets ``flipped >= N`` only for N = 1."""
    from operators import flipped_images

    flips = np.asarray(flipped_images(ref_logits, out_logits), dtype=bool)
    return flips if threshold <= 1 else np.zeros(len(out_logits), dtype=bool)


def _whole_number(threshold: float) -> str | None:
    return None if threshold >= 1 and threshold == int(threshold) else "needs a whole number N >= 1"


def _fraction(threshold: float) -> str | None:
    return None if 0 <= threshold < 1 else "needs D in [0, 1)"


@dataclass(frozen=True)
class CountSpec:
    """A term that is a count over the images rather than a catalogue metric. ``value``:
    ``(ref_logits, out_logits, truth) -> float`` (NaN: not measurable, never a kill);
    ``check``: why a threshold is refused (None: fine); ``per_image``: which images alone
    meet the term (None: no single image decides); ``monotone``: the value only grows as
    images run (fast kill may stop on it); ``needs_labels``: the images must be labelled."""

    name: str
    comparison: str
    doc: str
    value: Callable[..., float]
    check: Callable[[float], str | None]
    per_image: Callable | None = None
    monotone: bool = False
    needs_labels: bool = False


# The count terms: one line each; the parser, the judge and the kill matrix read this table.
COUNT_TERMS: dict[str, CountSpec] = {spec.name: spec for spec in (
    CountSpec("flipped", ">=", "images whose top-1 label differs from the original's", _flipped, _whole_number,
              per_image=_flipped_per_image, monotone=True),
    CountSpec("accuracy_drop", ">", "the original's accuracy minus the mutant's on labelled images (0..1)",
              _accuracy_drop, _fraction, needs_labels=True),
)}


def count_values(ref_logits, out_logits, truth=None) -> dict[str, float]:
    """Every count term's value for one pair (the judge stores them beside the metrics)."""
    with np.errstate(all="ignore"):
        return {name: spec.value(ref_logits, out_logits, truth) for name, spec in COUNT_TERMS.items()}


def needs_labels(criterion) -> list[str]:
    """The count terms of ``criterion`` that need labelled images."""
    return [t.metric for t in criterion.terms() if t.metric in COUNT_TERMS and COUNT_TERMS[t.metric].needs_labels]


@dataclass(frozen=True)
class CountTerm:
    """``flipped >= N``, ``accuracy_drop > D``, ...: read from the values the judge adds."""

    metric: str
    threshold: float

    @property
    def spec(self) -> CountSpec:
        return COUNT_TERMS[self.metric]

    @property
    def comparison(self) -> str:
        return self.spec.comparison

    @property
    def key(self) -> str:
        return self.metric

    def terms(self) -> tuple:
        return (self,)

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric,)

    def is_killed(self, values) -> bool:
        if self.metric not in values:
            raise ValueError(f"kill criterion needs {self.metric!r}, which the values lack")
        value = float(values[self.metric])
        if not math.isfinite(value):
            return False  # no labels, nothing measured: never a kill by this term
        return value >= self.threshold if self.comparison == ">=" else value > self.threshold

    def met_by_prefix(self, ref_logits, prefix_logits) -> bool:
        """Only a count that grows as images run can settle a kill early (no labels in the worker)."""
        if not self.spec.monotone or self.spec.needs_labels:
            return False
        with np.errstate(all="ignore"):
            return self.is_killed({self.metric: self.spec.value(ref_logits[: len(prefix_logits)], prefix_logits)})

    def image_kills(self, ref_logits, out_logits) -> np.ndarray:
        """Per image, whether that image alone meets this term."""
        if self.spec.per_image is None:
            return np.zeros(len(out_logits), dtype=bool)
        with np.errstate(all="ignore"):
            return np.asarray(self.spec.per_image(ref_logits, out_logits, self.threshold), dtype=bool)

    def __str__(self) -> str:
        return f"{self.metric} {self.comparison} {self.threshold:g}"


@dataclass(frozen=True)
class _Combination:
    """Terms joined by one word: `AnyOf` (``or``: any part kills) or `AllOf` (``and``: every part)."""

    parts: tuple
    word = ""
    combine = staticmethod(any)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m for p in self.parts for m in p.metrics))

    def terms(self) -> tuple:
        """Every single term, in order."""
        return tuple(t for p in self.parts for t in p.terms())

    def is_killed(self, values) -> bool:
        return self.combine(p.is_killed(values) for p in self.parts)

    def met_by_prefix(self, ref_logits, prefix_logits) -> bool:
        return self.combine(p.met_by_prefix(ref_logits, prefix_logits) for p in self.parts)

    def __str__(self) -> str:
        return f" {self.word} ".join(str(p) for p in self.parts)


class AnyOf(_Combination):
    word, combine = "or", staticmethod(any)


class AllOf(_Combination):
    word, combine = "and", staticmethod(all)


@dataclass(frozen=True)
class KillCriterion:
    """Kill when `metric`'s value is on the far side of `threshold` (or not finite)."""

    metric: str
    threshold: float
    params: tuple = ()  # (name, value) pairs of the metric's own keywords: rbo(depth=20)

    def __post_init__(self):
        if self.metric not in CATALOGUE:
            raise ValueError(f"unknown metric {self.metric!r}; known: {', '.join(CATALOGUE)}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, got {self.threshold!r}")
        object.__setattr__(self, "threshold", float(self.threshold))

    @property
    def key(self) -> str:
        """Where the judged values hold this term's value: the metric's name, with its
        parameters when it has any (``rbo(depth=20)``: not the catalogue's default value)."""
        if not self.params:
            return self.metric
        return f"{self.metric}({', '.join(f'{k}={v:g}' for k, v in self.params)})"

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.key,)

    def terms(self) -> tuple:
        return (self,)

    @property
    def comparison(self) -> str:
        """'<' for higher-is-closer operators, '>' for lower-is-closer ones."""
        return "<" if CATALOGUE[self.metric].direction == HIGHER_IS_CLOSER else ">"

    def is_killed(self, values) -> bool:
        """Whether `values` (metric name -> value) meets this criterion."""
        if self.key not in values:
            raise ValueError(f"kill criterion needs {self.key!r}, which the values lack")
        value = float(values[self.key])
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
        if metric.inputs != "logits" or not metric.monotone:
            return False
        filled = np.array(ref_logits, dtype=np.float32, copy=True)
        filled[: len(prefix_logits)] = prefix_logits
        with np.errstate(all="ignore"):
            return self.is_killed({self.key: metric.evaluate(ref_logits, filled, None, None, 5, dict(self.params))})

    def value(self, ref_logits, other_logits, ref_latencies=None, other_latencies=None) -> float:
        """This term's metric with its own parameters, for one pair."""
        return CATALOGUE[self.metric].evaluate(ref_logits, other_logits, ref_latencies, other_latencies, 5,
                                               dict(self.params))

    def __str__(self) -> str:
        return f"{self.key} {self.comparison} {self.threshold:g}"


def term_values(criterion, ref: dict, out: dict) -> dict:
    """The values of the criterion's parameterised terms (the catalogue's own values cover
    the others), keyed as the terms read them; ``ref``/``out``: logits and latencies."""
    return {t.key: t.value(ref["logits"], out["logits"], ref.get("latencies"), out.get("latencies"))
            for t in criterion.terms() if getattr(t, "params", ())}


def parse_criterion(text: str):
    """Parse a criterion: terms 'METRIC < T' / 'METRIC > T' (the side the metric's direction
    implies), 'flipped >= N', 'accuracy_drop > D', joined by 'and' / 'or' ('and' binds
    tighter). One term gives a `KillCriterion` (or `CountTerm`), several an `AnyOf`/`AllOf`."""
    if not isinstance(text, str):
        raise ValueError(f"kill criterion must be text, got {type(text).__name__}")
    alternatives = [part for part in re.split(r"\s+or\s+", text.strip())]
    parsed = []
    for alternative in alternatives:
        terms = [_parse_term(t, text) for t in re.split(r"\s+and\s+", alternative)]
        parsed.append(terms[0] if len(terms) == 1 else AllOf(tuple(terms)))
    return parsed[0] if len(parsed) == 1 else AnyOf(tuple(parsed))


def _parse_term(term: str, text: str):
    """One 'NAME CMP NUMBER' term of ``text``."""
    count = re.match(r"^\s*(%s)\s*(>=|>)\s*(\S+)\s*$" % "|".join(map(re.escape, COUNT_TERMS)), term)
    if count:
        name, cmp, thr = count.groups()
        spec = COUNT_TERMS[name]
        if cmp != spec.comparison:
            raise ValueError(f"bad comparison {cmp!r} in kill criterion {text!r}; use {spec.comparison!r} "
                             f"for {name}")
        threshold = _threshold(thr, text)
        problem = spec.check(threshold)
        if problem:
            letter = "N" if spec.comparison == ">=" else "D"
            raise ValueError(f"{name} {spec.comparison} {letter} {problem}, not {thr!r}")
        return CountTerm(name, threshold)
    m = _CRITERION.match(term)
    if not m:
        raise ValueError(f"cannot read kill criterion {text!r}; expected e.g. 'top1_agreement < 1.0', "
                         "'flipped >= 2' or 'rel_l2 > 1e-3 and top1_agreement < 1.0'")
    op, cmp, thr = m.group("op"), m.group("cmp"), m.group("thr")
    if op not in CATALOGUE:
        raise ValueError(f"unknown operator {op!r} in kill criterion {text!r}; known: {', '.join(CATALOGUE)}")
    params = _metric_params(op, m.group("params"), text)
    direction = CATALOGUE[op].direction
    expected = "<" if direction == HIGHER_IS_CLOSER else ">"
    if cmp not in ("<", ">"):
        raise ValueError(f"bad comparison {cmp!r} in kill criterion {text!r}; use {expected!r} for {op}")
    if cmp != expected:
        raise ValueError(f"bad comparison {cmp!r} in kill criterion {text!r}: {op} is {direction}, "
                         f"so a mutant is killed when it is {expected} the threshold")
    return KillCriterion(op, _threshold(thr, text), params)


def _metric_params(op: str, text_params: str | None, text: str) -> tuple:
    """``(k=10, p=0.95)`` after a metric's name: keywords its summary takes, as numbers,
    tried once on a probe pair so a value the metric refuses is refused here, in one line."""
    if text_params is None:
        return ()
    known = CATALOGUE[op].parameters()
    params = {}
    for item in filter(None, (x.strip() for x in text_params.split(","))):
        name, eq, value = (x.strip() for x in item.partition("="))
        if not eq or name not in known:
            raise ValueError(f"bad parameter {item!r} of {op} in kill criterion {text!r}; "
                             f"{op} takes {', '.join(f'{k}=' for k in known) or 'no parameters'}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"bad parameter {item!r} of {op} in kill criterion {text!r}; expected a number") from None
        params[name] = int(number) if number.is_integer() and not isinstance(known[name], float) else number
    probe = np.eye(2, 1000, dtype=np.float32)
    try:
        CATALOGUE[op].evaluate(probe, probe, np.ones(2), np.ones(2), 5, params)
    except (ValueError, TypeError) as err:
        raise ValueError(f"bad parameters of {op} in kill criterion {text!r}: {err}") from None
    return tuple(sorted(params.items()))


def _threshold(thr: str, text: str) -> float:
    """A term's threshold: a finite number, or one line naming the criterion."""
    try:
        threshold = float(thr)
    except ValueError:
        raise ValueError(f"bad threshold {thr!r} in kill criterion {text!r}; expected a number") from None
    if not math.isfinite(threshold):
        raise ValueError(f"bad threshold {thr!r} in kill criterion {text!r}; it must be finite")
    return threshold


DEFAULT_CRITERION = KillCriterion("top1_agreement", 1.0)
