"""Optimisation-pass mutation operators ("stack mutants": same program, different build).

``apply`` returns the module unchanged; ``build_options(site)`` gives the overrides the
builder honours: ``{"opt_level": 0..3, "disabled_pass": [names], "fast_math": bool}``.
"""
from __future__ import annotations

import tvm

from .base import MutationOperator, Site

# The Relax passes of each opt level, in pipeline order, before dataflow lowering.
# FastMathTransform rewrites Relax calls (exp, tanh, erf, softmax), so it has to run
# before LegalizeOps: after it there is nothing left for it to match.
OPT_LEVEL_PASSES: dict[int, tuple[str, ...]] = {
    0: ("LegalizeOps", "AnnotateTIROpPattern"),
    1: ("LegalizeOps", "AnnotateTIROpPattern", "FoldConstant"),
    2: ("LegalizeOps", "AnnotateTIROpPattern", "FoldConstant", "FuseOps", "FuseTIR"),
    3: ("FastMathTransform", "LegalizeOps", "AnnotateTIROpPattern", "FoldConstant", "FuseOps", "FuseTIR"),
}
# Passes a stack may disable by name (the others are needed to build at all).
OPTIONAL_PASSES: tuple[str, ...] = ("FoldConstant", "FuseOps", "FuseTIR", "FastMathTransform")


class _PassOperator(MutationOperator):
    level = "pass"

    def choices(self) -> list[tuple[str, dict]]:
        raise NotImplementedError

    def sites(self, mod: tvm.IRModule) -> list[Site]:
        # the key is hashable (tuples), like every Site key
        return [Site(i, text, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(options.items())))
                for i, (text, options) in enumerate(self.choices())]

    def apply(self, mod: tvm.IRModule, site: Site) -> tvm.IRModule:
        return mod

    def build_options(self, site: Site) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in site.key}

    def diff(self, original: tvm.IRModule, mutated: tvm.IRModule, site: Site) -> str:
        return f"build options: {self.build_options(site)}"


class OptLevel(_PassOperator):
    name = "pass_opt_level"
    doc = "Build with another optimisation level (O0 to O3)."

    def choices(self):
        return [(f"opt_level={level} ({', '.join(OPT_LEVEL_PASSES[level])})", {"opt_level": level})
                for level in sorted(OPT_LEVEL_PASSES)]


class DisablePass(_PassOperator):
    name = "pass_disable"
    doc = "Build with one optional Relax pass disabled."

    def choices(self):
        return [(f"disable {name}", {"disabled_pass": [name]}) for name in OPTIONAL_PASSES]


class FastMath(_PassOperator):
    name = "pass_fast_math"
    doc = "Build with fast-math (fast exp/tanh/erf/softmax) switched on or off."

    def choices(self):
        return [("fast_math on", {"fast_math": True}), ("fast_math off", {"fast_math": False})]


OPERATORS = (OptLevel(), DisablePass(), FastMath())
