"""Which layers must stay in float32 (`mutatenn localize --precision`).

A precision=fp16 TVM variant (B) whose top-1 agreement with its float32 twin (A) is below a
target gets a small set of bindings to keep in float32 (the ``keep_fp32`` build option):

1. both variants run every image; when B already meets the target nothing is searched;
2. every data-dependent layer of the one program is read on both sides (exposed a few per
   build, as the localiser does) on the images whose labels differ. Layers whose float32
   values lie outside float16's range rank first, furthest outside first (to a tenth of a
   decade; overflow: above 65504; underflow: most values below float16's smallest normal
   number, 2^-14), then by *growth*: their relative L2 against float32 minus the largest
   error of the layers they read. Error compounds downstream, so growth ranks the layers that add error
   (a large rounding), not the last layers; but a layer reading values already lost to
   underflow adds little error by that measure while it underflows itself, hence the range
   first;
3. the ranked layers are kept in float32 in doubling counts (1, 2, 4, ...) until the
   agreement target is met, then a bisection finds the shortest prefix of the ranking that
   meets it. Each trial is one build of B with that ``keep_fp32`` and a run over every image.

It assumes keeping more of the ranking never lowers the agreement (the trials are listed,
so a case where that did not hold shows). int8 variants are not searched: a TVM int8 build
is fake-quantised float math whose per-layer repair would drop quantize/dequantize pairs,
which ``keep_fp32`` does not do.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .align import align, canonical_values
from .divergence import measure

DEFAULT_TARGET = 0.99
PRECISION_JSON = "precision.json"
FP16_MAX = 65504.0
FP16_MIN_NORMAL = 2.0 ** -14


@dataclass(frozen=True)
class LayerError:
    """One layer of B against A: its error, what it adds, and whether float32's values
    leave float16's range there."""

    name: str
    kind: str
    shape: tuple
    rel_l2: float
    growth: float
    max_abs_fp32: float
    range: str  # "overflow" (values above 65504), "underflow" (most values below 2^-14), or ""
    outside: float = 0.0  # how far (decades) float32's values lie outside float16's range

    def row(self) -> dict:
        return {"layer": self.name, "kind": self.kind, "shape": "x".join(map(str, self.shape)),
                "rel_l2": self.rel_l2, "growth": self.growth, "max_abs_fp32": self.max_abs_fp32,
                "range": self.range, "outside_decades": self.outside}


@dataclass(frozen=True)
class Trial:
    kept: tuple
    agreement: float


@dataclass
class PrecisionRepair:
    """The search's result: agreement before and after, the set kept, and its cost."""

    a_text: str
    b_text: str
    images: str
    image_count: int
    target: float
    before: float
    after: float
    kept: tuple  # B's whole keep_fp32 (its own names first given, plus those found)
    variant_text: str  # the variant that reproduces ``after``
    layers: list[LayerError] = field(default_factory=list)  # ranked, worst first
    trials: list[Trial] = field(default_factory=list)
    builds: int = 0
    build_s: float = 0.0
    rows: list[int] = field(default_factory=list)

    @property
    def restored(self) -> bool:
        return self.after >= self.target

    def summary(self) -> dict:
        return {"a": self.a_text, "b": self.b_text, "images": self.images, "image_count": self.image_count,
                "target_agreement": self.target, "agreement_before": self.before, "agreement_after": self.after,
                "restored": self.restored, "keep_fp32": list(self.kept), "variant": self.variant_text,
                "builds": self.builds, "build_s": round(self.build_s, 3), "images_measured": list(self.rows),
                "trials": [{"keep_fp32": list(t.kept), "agreement": t.agreement} for t in self.trials],
                "layers": [_finite(layer.row()) for layer in self.layers]}

    def format(self, shown: int = 8) -> str:
        n = self.image_count
        lines = [f"precision: B {self.b_text} against A {self.a_text} on {n} images ({self.images}); "
                 f"target top-1 agreement {self.target:g}",
                 f"agreement before: {self.before:.3f} ({round(self.before * n)}/{n})"]
        if not self.trials:
            lines.append("B already meets the target: nothing to keep in float32")
        else:
            lines.append(f"per-layer error on {len(self.rows)} image(s) whose labels differ, worst first (values "
                         "outside float16's range first; rel: relative L2 against float32; growth: what the layer "
                         "adds to its inputs' error):")
            for layer in self.layers[:shown]:
                note = f"  fp32 max|x| {layer.max_abs_fp32:.3g}" + (f" ({layer.range} in fp16)" if layer.range else "")
                lines.append(f"  {layer.name:<8} {layer.kind:<14} {'x'.join(map(str, layer.shape)):<16} "
                             f"rel {layer.rel_l2:.3g}  growth {layer.growth:.3g}{note}")
            if len(self.layers) > shown:
                lines.append(f"  ... {len(self.layers) - shown} more in precision.json")
            lines.append("trials: " + "; ".join(f"keep {len(t.kept)} -> {t.agreement:.3f}" for t in self.trials))
        verdict = "restored" if self.restored else "NOT restored (every ranked layer kept)"
        lines += [f"keep_fp32: {'+'.join(self.kept) or '(none)'} ({len(self.kept)} layer(s))",
                  f"agreement after: {self.after:.3f} ({round(self.after * n)}/{n}), target {verdict}",
                  f"reproduce: {self.variant_text}",
                  f"builds: {self.builds} ({self.build_s:.1f} s building)"]
        return "\n".join(lines)


def _finite(row: dict) -> dict:
    """Non-finite errors (inf: values overflowed) written as strings: the JSON stays strict."""
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


# ---------------------------------------------------------------- opening
def fp32_twin(b_variant) -> str:
    """B's text with its precision and kept layers taken out: the float32 reference."""
    options = dataclasses.replace(b_variant.options, precision="fp32", keep_fp32=())
    return variant_text(dataclasses.replace(b_variant, options=options))


def variant_text(variant) -> str:
    """A variant written out in full, the default opt level left out (``tvm:cpu(precision=fp16)``)."""
    from ..build.options import DEFAULT_OPT_LEVEL

    text = variant.canonical
    head, paren, rest = text.partition("(")
    if head.endswith(f":O{DEFAULT_OPT_LEVEL}"):
        head = head[: -len(f":O{DEFAULT_OPT_LEVEL}")]
    return head + paren + rest


def check_precision_variant(b_variant, side: str = "b") -> None:
    """B must be a TVM build at precision=fp16 (what keep_fp32 applies to): one line otherwise."""
    text = b_variant.text
    if b_variant.kind != "tvm":
        raise InputError(f"--{side} {text!r}: --precision keeps layers of a TVM build in float32 (keep_fp32); "
                         f"this is a {b_variant.kind} variant")
    options = b_variant.options
    if options.quantize != "none":
        raise InputError(f"--{side} {text!r}: --precision searches float16 builds; a TVM int8 build is "
                         "fake-quantised float math whose layers keep_fp32 cannot take out of quantisation")
    if options.precision != "fp16":
        raise InputError(f"--{side} {text!r}: --precision needs a variant with precision=fp16 "
                         f"(this one computes in {options.precision})")


def open_precision(model: str, a_text: str | None, b_text: str, images_spec: str, pretrained: str = "auto",
                   preset: str | None = None, trusted: bool = False):
    """The two sides: B (precision=fp16) and A (given, or B's float32 twin), one program."""
    from ..runners import parse_variant
    from .session import open_variants

    b_variant = parse_variant(b_text)
    check_precision_variant(b_variant)
    a_text = a_text or fp32_twin(b_variant)
    a_variant = parse_variant(a_text)
    if a_variant.options.precision != "fp32" or a_variant.options.quantize != "none":
        raise InputError(f"--a {a_text!r}: the reference of --precision computes in float32")
    pairing = open_variants(model, a_text, b_text, images_spec, pretrained, preset, None, trusted)
    if not pairing.same_program:
        raise InputError(f"--a {a_text!r} and --b {b_text!r}: --precision compares one program at two "
                         "precisions (same runner and import path)")
    from ..compression.precision import check_kept

    check_kept(pairing.b.mod, b_variant.options.keep_fp32)
    return pairing


# ---------------------------------------------------------------- the search
def repair_precision(pairing, target: float = DEFAULT_TARGET, per_round: int = 8, max_images: int = 4,
                     tolerance: float = 1e-4) -> PrecisionRepair:
    """Find the shortest prefix of the worst-first layer ranking that, kept in float32,
    brings B's top-1 agreement with A to ``target``."""
    from ..execute import cached_images, input_batch

    if not 0 < target <= 1:
        raise InputError(f"--target-agreement must be in (0, 1], got {target:g}")
    images = cached_images(pairing.images_spec)
    batch = input_batch(pairing.b.program, images)
    tap_a, tap_b = pairing.a.tap(input_batch(pairing.a.program, images)), pairing.b.tap(batch)
    labels_a = tap_a.run([])["__output__"].reshape(len(images), -1).argmax(axis=1)
    out_b = tap_b.run([])["__output__"].reshape(len(images), -1)
    before = float(np.mean(labels_a == out_b.argmax(axis=1)))
    own = tuple(pairing.b.variant.options.keep_fp32)
    result = PrecisionRepair(pairing.a.text, pairing.b.text, pairing.images_spec, len(images), target, before,
                             before, own, variant_text(pairing.b.variant))
    if before >= target:
        result.builds, result.build_s = tap_a.builds + tap_b.builds, tap_a.build_s + tap_b.build_s
        return result
    disagree = np.flatnonzero(labels_a != out_b.argmax(axis=1))
    result.rows = [int(i) for i in disagree[:max_images]]
    result.layers = rank_layers(pairing, tap_a, tap_b, result.rows, per_round, tolerance)
    ranked = [layer.name for layer in result.layers if layer.name not in own]
    trial_s = [0.0]

    def agreement(k: int) -> float:
        kept = own + tuple(ranked[:k])
        start = time.perf_counter()
        out = _with_kept(pairing, kept, batch).run([])["__output__"].reshape(len(images), -1)
        trial_s[0] += time.perf_counter() - start
        value = float(np.mean(labels_a == out.argmax(axis=1)))
        result.trials.append(Trial(kept, value))
        return value

    k_found, value = _shortest_prefix(agreement, len(ranked), target)
    options = pairing.b.variant.options.with_overrides({"keep_fp32": own + tuple(ranked[:k_found])})
    result.kept = options.keep_fp32
    result.after = value
    result.variant_text = variant_text(dataclasses.replace(pairing.b.variant, options=options))
    result.builds = tap_a.builds + tap_b.builds + len(result.trials)
    result.build_s = tap_a.build_s + tap_b.build_s + trial_s[0]
    return result


def _shortest_prefix(agreement, count: int, target: float) -> tuple[int, float]:
    """(k, agreement at k): the least k meeting ``target`` by doubling then bisection
    (``count`` and its agreement when none does)."""
    if count == 0:
        return 0, agreement(0)
    lo, k = 0, 1  # lo: the largest count known to miss the target
    while True:
        k = min(k, count)
        value = agreement(k)
        if value >= target or k == count:
            break
        lo, k = k, k * 2
    if value < target:
        return k, value
    hi, best = k, value
    while hi - lo > 1:
        mid = (lo + hi) // 2
        got = agreement(mid)
        if got >= target:
            hi, best = mid, got
        else:
            lo = mid
    return hi, best


def rank_layers(pairing, tap_a, tap_b, rows: list[int], per_round: int, tolerance: float) -> list[LayerError]:
    """Every data-dependent layer measured on ``rows`` (``per_round`` exposed per build),
    worst first by growth, then by error; layers within ``tolerance`` are left out."""
    pairs = align(pairing.a.graph, pairing.b.graph, True)
    graph = pairing.b.graph
    rel: dict[str, float] = {}
    stats: dict[str, tuple[float, str]] = {}
    for start in range(0, len(pairs), per_round):
        chunk = pairs[start : start + per_round]
        va = tap_a.capture([p.a.name for p in chunk], rows)
        vb = tap_b.capture([p.b.name for p in chunk], rows)
        for p in chunk:
            xa, xb = canonical_values(p.a, va[p.a.name]), canonical_values(p.b, vb[p.b.name])
            value = measure(xa, xb)[0]
            rel[p.b.name] = value if math.isfinite(value) else math.inf
            stats[p.b.name] = fp16_range(xa)
            tap_a.cache.pop(p.a.name, None)
            tap_b.cache.pop(p.b.name, None)
    layers = []
    for p in pairs:
        name = p.b.name
        inputs = [rel[r] for r in graph[name].reads if r in rel]
        growth = _growth(rel[name], max(inputs, default=0.0))
        if rel[name] > tolerance:
            layers.append(LayerError(name, p.b.kind, p.b.shape, rel[name], growth, *stats[name]))
    # A tenth of a decade apart is a tie (a conv and its bias add): then the layer adding the error first.
    order = sorted(range(len(layers)),
                   key=lambda i: (-round(layers[i].outside, 1), -layers[i].growth, -layers[i].rel_l2, i))
    return [layers[i] for i in order]


def _growth(error: float, inputs: float) -> float:
    if math.isinf(error):
        return 0.0 if math.isinf(inputs) else math.inf
    return error - inputs


def fp16_range(values: np.ndarray) -> tuple[float, str, float]:
    """(largest |value| in float32, whether float16 cannot hold them, how many decades
    outside its range): overflow above 65504, underflow when most nonzero values lie below
    float16's smallest normal number."""
    magnitude = np.abs(values[np.isfinite(values)])
    top = float(magnitude.max()) if magnitude.size else math.inf
    nonzero = magnitude[magnitude > 0]
    if top > FP16_MAX:
        return top, "overflow", math.log10(top / FP16_MAX)
    median = float(np.median(nonzero)) if nonzero.size else FP16_MIN_NORMAL
    if median < FP16_MIN_NORMAL:
        return top, "underflow", math.log10(FP16_MIN_NORMAL / median)
    return top, "", 0.0


def _with_kept(pairing, kept: tuple, batch: np.ndarray):
    """A tap of B built with ``keep_fp32`` = ``kept``."""
    options = pairing.b.variant.options.with_overrides({"keep_fp32": kept})
    variant = dataclasses.replace(pairing.b.variant, options=options)
    variant = dataclasses.replace(variant, text=variant_text(variant))
    return pairing.b.tap_type("b", variant, pairing.b.program, pairing.b.mod, batch)
