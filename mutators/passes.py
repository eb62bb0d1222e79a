"""Optimisation-pass mutation operators ("stack mutants": same program, different build).

``apply`` returns the module unchanged; ``build_options(site)`` gives the overrides the
builder honours: ``{"opt_level": 0..3, "disabled_pass": [names], "fast_math": bool}``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import tvm

from .base import Example, MutationOperator, Outcome, Site, lower, structural_hash_hex

# The one pass table of MutateNN, read by the pass mutants here and by the builder
# (`mutatenn.build`): every Relax pass a build may run before VM lowering, in pipeline
# order. ``min_level`` is the lowest opt level that runs an optional pass.
# FastMathTransform rewrites Relax calls (exp, tanh, erf, softmax), so it has to run
# before LegalizeOps: after it there is nothing left for it to match.


@dataclass(frozen=True)
class PassSpec:
    """One Relax pass of the build pipeline (a `tvm.relax.transform` name)."""

    name: str
    optional: bool  # a stack may switch it off, a pass mutant may toggle it
    min_level: int = 0


PIPELINE: tuple[PassSpec, ...] = (
    PassSpec("FastMathTransform", True, 3),
    PassSpec("LegalizeOps", False),
    PassSpec("AnnotateTIROpPattern", False),
    PassSpec("FoldConstant", True, 1),
    PassSpec("FuseOps", True, 2),
    PassSpec("FuseTIR", True, 2),
)
OPT_LEVELS: tuple[int, ...] = (0, 1, 2, 3)
# Passes a stack may disable by name (the others are needed to build at all), in the
# order the builder reports them.
OPTIONAL_PASSES: tuple[str, ...] = ("FoldConstant", "FuseOps", "FuseTIR", "FastMathTransform")
assert set(OPTIONAL_PASSES) == {p.name for p in PIPELINE if p.optional}


def level_passes(level: int, optional_only: bool = True) -> tuple[str, ...]:
    """The passes opt level ``level`` runs: optional ones in `OPTIONAL_PASSES` order, or
    (``optional_only=False``) every pipeline pass in pipeline order."""
    runs = {p.name for p in PIPELINE if not p.optional or p.min_level <= level}
    if optional_only:
        return tuple(name for name in OPTIONAL_PASSES if name in runs)
    return tuple(p.name for p in PIPELINE if p.name in runs)


OPT_LEVEL_PASSES: dict[int, tuple[str, ...]] = {level: level_passes(level) for level in OPT_LEVELS}


class PassOperator(MutationOperator):
    """Base of the pass operators: the program is unchanged, its build options differ."""

    level = "pass"

    def choices(self) -> list[tuple[str, dict]]:
        raise NotImplementedError

    def sites(self, mod: tvm.IRModule) -> list[Site]:
        # the key is hashable (tuples), like every Site key
        return [Site(i, text, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(options.items())))
                for i, (text, options) in enumerate(self.choices())]

    def apply(self, mod: tvm.IRModule, site: Site) -> tvm.IRModule:
        return mod

    def mutate(self, mod: tvm.IRModule, site: Site, memo: dict) -> Outcome:
        """Same module; the hash is the lowered original's plus the build options."""
        if "lowered" not in memo:
            memo["lowered"] = lower(mod)
        options = json.dumps(self.build_options(site), sort_keys=True)
        return Outcome(mod, structural_hash_hex(memo["lowered"], options))

    def build_options(self, site: Site) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in site.key}

    def diff(self, original: tvm.IRModule, mutated: tvm.IRModule, site: Site) -> str:
        return f"build options: {self.build_options(site)}"

    def examples(self) -> list[Example]:
        return list(EXAMPLES.get(self.name, ()))


class OptLevel(PassOperator):
    name = "pass_opt_level"
    doc = "Build with another optimisation level (O0 to O3)."

    def choices(self):
        return [(f"opt_level={level} ({', '.join(level_passes(level, optional_only=False))})", {"opt_level": level})
                for level in OPT_LEVELS]


class DisablePass(PassOperator):
    name = "pass_disable"
    doc = "Build with one optional Relax pass disabled."

    def choices(self):
        return [(f"disable {name}", {"disabled_pass": [name]}) for name in OPTIONAL_PASSES]


class FastMath(PassOperator):
    name = "pass_fast_math"
    doc = "Build with fast-math (fast exp/tanh/erf/softmax) switched on or off."

    def choices(self):
        return [("fast_math on", {"fast_math": True}), ("fast_math off", {"fast_math": False})]


OPERATORS = (OptLevel(), DisablePass(), FastMath())


# Worked examples (`base.Example`) on `mutators.examples.PROGRAMS`, by operator name. The
# program is unchanged, so there is no ``before``; ``after`` is the build option set.
EXAMPLES: dict[str, tuple[Example, ...]] = {
    "pass_opt_level": (Example("cnn", 0, "", "{'opt_level': 0}"),),
    "pass_disable": (Example("cnn", 1, "", "{'disabled_pass': ['FuseOps']}"),),
    "pass_fast_math": (Example("arith", 0, "", "{'fast_math': True}"),),
}
