"""`localize --passes`: the one pipeline change (a pass switched on or off, a TIR option,
the schedule) whose addition first makes B's outputs diverge from A's.

Two TVM variants of one program that differ by their build pipelines (opt levels,
disabled or required passes, TIR options, a campaign's pass mutant) differ by a list of
steps (`pipeline_steps`, in pipeline order). Build k applies the first k steps to A's
options; build 0 is A, build n is B. A bisection over k (one build per step) finds the
first build whose outputs diverge from A's beyond the tolerance; the step taken there is
the guilty one, and the layer localisation then runs between the builds just before and
just after it. The bisection assumes a step, once taken, keeps the outputs diverged (the
builds it took are listed, so a reader can see when that did not hold).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .divergence import measure

# Options other than the pass set that change the built code without changing the
# program: each differing one is a step of its own. (The pass set, from opt_level,
# disabled/required passes and fast_math, and the TIR options are steps pass by pass and
# option by option.)
OPTION_STEPS = ("schedule", "bounds_check")


class PassesError(InputError):
    """The two sides do not differ by their pipelines (exit 2)."""


@dataclass(frozen=True)
class Step:
    """One change from A's pipeline towards B's."""

    kind: str  # "enable", "disable", "tir" or "option"
    name: str
    value: object = None

    @property
    def text(self) -> str:
        if self.kind in ("enable", "disable"):
            return f"{'+' if self.kind == 'enable' else '-'}{self.name}"
        prefix = "tir " if self.kind == "tir" else ""
        return f"{prefix}{self.name}={self.value}"


@dataclass
class PassBisection:
    """What the bisection built and found."""

    a: str
    b: str
    steps: list[Step]
    builds: list[dict] = field(default_factory=list)  # k, options label, rel_l2, top-1 changes, diverges
    guilty: int | None = None  # index into steps (None: B does not diverge from A)
    before: object = None  # BuildOptions just before the guilty step
    after: object = None  # ... and just after it
    build_s: float = 0.0

    def summary(self) -> dict:
        return {"a": self.a, "b": self.b, "steps": [s.text for s in self.steps],
                "guilty": None if self.guilty is None else self.steps[self.guilty].text,
                "before": None if self.before is None else self.before.label(),
                "after": None if self.after is None else self.after.label(),
                "builds": self.builds, "build_s": round(self.build_s, 3)}

    def format(self) -> str:
        lines = [f"pipeline from A ({self.a}) to B ({self.b}): {len(self.steps)} step(s): "
                 + ", ".join(s.text for s in self.steps)]
        for b in sorted(self.builds, key=lambda row: row["k"]):
            lines.append(f"  build {b['k']:>2} ({b['options']}): rel_l2 {b['rel_l2']:.3g}, "
                         f"{b['flips']} top-1 change(s) -> {'diverges' if b['diverges'] else 'agrees'}")
        if self.guilty is None:
            lines.append("B's outputs do not diverge from A's above the tolerance: no pass to blame")
        else:
            lines.append(f"guilty: {self.steps[self.guilty].text} (step {self.guilty + 1} of {len(self.steps)}; "
                         f"{len(self.builds)} builds, {self.build_s:.1f} s): layers localised between "
                         f"{self.before.label()} and {self.after.label()}")
        return "\n".join(lines)


def pipeline_steps(a, b) -> list[Step]:
    """The changes from build options ``a`` to ``b``, in pipeline order: passes switched on
    or off (in `mutators.passes.PIPELINE` order), then TIR options, then other options."""
    from mutators.passes import PIPELINE

    order = {spec.name: i for i, spec in enumerate(PIPELINE)}
    runs_a, runs_b = set(a.passes()), set(b.passes())
    steps = [Step("enable" if name in runs_b else "disable", name)
             for name in sorted(runs_a ^ runs_b, key=lambda n: order.get(n, len(order)))]
    tir_a, tir_b = dict(a.tir_options), dict(b.tir_options)
    steps += [Step("tir", name, tir_b.get(name, "default")) for name in sorted(set(tir_a) | set(tir_b))
              if tir_a.get(name) != tir_b.get(name)]
    steps += [Step("option", name, getattr(b, name)) for name in OPTION_STEPS if getattr(a, name) != getattr(b, name)]
    return steps


def options_after(a, steps: list[Step]):
    """A's build options with ``steps`` applied (the pass set set exactly, not by level)."""
    runs = set(a.passes())
    tir = dict(a.tir_options)
    other = {}
    for step in steps:
        if step.kind == "enable":
            runs.add(step.name)
        elif step.kind == "disable":
            runs.discard(step.name)
        elif step.kind == "tir":
            if step.value == "default":
                tir.pop(step.name, None)
            else:
                tir[step.name] = step.value
        else:
            other[step.name] = step.value
    base = dataclasses.replace(a, required_pass=(), disabled_pass=(), fast_math=None)
    at_level = set(base.passes())
    options = dataclasses.replace(base, required_pass=tuple(sorted(runs - at_level)),
                                  disabled_pass=tuple(sorted(at_level - runs)), tir_options=tir, **other)
    if set(options.passes()) != runs:
        raise RuntimeError(f"build options {options.label()} run {options.passes()}, not {sorted(runs)}")
    return options


def check_pipeline_pair(pairing) -> None:
    """Both sides: TVM builds of one program for one target, differing by pipeline only."""
    a, b = pairing.a, pairing.b
    if a.variant.kind != "tvm" or b.variant.kind != "tvm":
        raise PassesError(f"--passes bisects a TVM build pipeline: {a.text} and {b.text} must both be TVM variants")
    if not pairing.same_program or a.mod is not b.mod and not _same_module(a.mod, b.mod):
        raise PassesError(f"--passes needs one program built two ways: {pairing.what} differ in their program, "
                          "not only in their pipelines")
    if a.variant.target.name != b.variant.target.name:
        raise PassesError(f"--passes needs one target: A builds for {a.variant.target.name}, "
                          f"B for {b.variant.target.name}")
    if not pipeline_steps(a.variant.options, b.variant.options):
        raise PassesError(f"{a.text} and {b.text} do not differ by pipeline (the same passes, TIR options and "
                          "schedule): nothing to bisect")


def _same_module(x, y) -> bool:
    import tvm_ffi

    return bool(tvm_ffi.structural_equal(x, y))


def bisect_pipeline(pairing, tolerance: float) -> PassBisection:
    """Build A, B and the steps between them as the bisection needs (one build per step
    it takes) on every image of the set."""
    from ..execute import cached_images, input_batch
    from ..runners import make_runner

    check_pipeline_pair(pairing)
    a, b = pairing.a, pairing.b
    steps = pipeline_steps(a.variant.options, b.variant.options)
    batch = input_batch(a.program, cached_images(pairing.images_spec))
    result = PassBisection(a.text, b.text, steps)
    outputs: dict[int, np.ndarray] = {}

    def run(k: int) -> np.ndarray:
        if k not in outputs:
            options = a.variant.options if k == 0 else options_after(a.variant.options, steps[:k])
            runner = make_runner(dataclasses.replace(a.variant, options=options), a.program, mod=a.mod)
            start = time.perf_counter()
            outputs[k] = runner.run(batch).logits
            result.build_s += time.perf_counter() - start
            if k:
                rel, _ = measure(outputs[0], outputs[k])
                flips = int((outputs[0].argmax(axis=1) != outputs[k].argmax(axis=1)).sum())
                result.builds.append({"k": k, "step": steps[k - 1].text, "options": options.label(),
                                      "rel_l2": float(rel), "flips": flips,
                                      "diverges": bool(rel > tolerance or flips)})
        return outputs[k]

    def diverges(k: int) -> bool:
        run(0)
        run(k)
        return next(row["diverges"] for row in result.builds if row["k"] == k)

    if not diverges(len(steps)):
        return result
    low, high = 0, len(steps)  # build low agrees with A, build high diverges
    while high - low > 1:
        mid = (low + high) // 2
        if diverges(mid):
            high = mid
        else:
            low = mid
    result.guilty = high - 1
    result.before = options_after(a.variant.options, steps[:high - 1])
    result.after = options_after(a.variant.options, steps[:high])
    return result


def around_guilty_step(pairing, bisection: PassBisection):
    """The pairing of the builds just before (A) and just after (B) the guilty step."""
    from .session import Side

    a = pairing.a
    step = bisection.steps[bisection.guilty].text
    before = Side("a", f"{a.text} with the steps before {step} ({bisection.before.label()})",
                  dataclasses.replace(a.variant, options=bisection.before), a.program, a.mod)
    after = Side("b", f"{a.text} with the steps through {step} ({bisection.after.label()})",
                 dataclasses.replace(a.variant, options=bisection.after), a.program, a.mod)
    return dataclasses.replace(pairing, a=before, b=after, what=f"{pairing.what}, around {step}")
