"""Optimisation-pass mutation operators ("stack mutants": same program, different build).

``apply`` returns the module unchanged; ``build_options(site)`` gives the overrides the
builder honours: ``{"opt_level": 0..3, "disabled_pass": [names], "fast_math": bool,
"required_pass": [names], "tir_options": [[name, value], ...]}``.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import tvm

from .base import Example, MutationOperator, Outcome, Site, lower, structural_hash_hex

# The one pass table of MutateNN, read by the pass mutants here and by the builder
# (`mutatenn.build`): every Relax pass a build may run before VM lowering, in pipeline
# order. ``min_level`` is the lowest opt level that runs an optional pass; None: no opt
# level runs it, only a stack's ``required_passes`` or a ``pass_enable`` mutant does.
# FastMathTransform and the opt-in passes rewrite Relax calls, so they run before
# LegalizeOps: after it there is nothing left for them to match. ConvertLayout comes
# first: it segfaults on a binary op with a scalar PrimValue operand, which
# FoldBatchnormToConv2D emits (``add(var, T.float32(eps))``); after it, that pass finds
# no NCHW conv2d -> batch_norm to fold (a stack with both gets NHWC, batch_norm kept).


def _to_nhwc():
    """ConvertLayout takes its layouts as arguments: conv2d to NHWC data, HWIO kernels
    (TOPI's NHWC convolution; Relax refuses the old "default" kernel layout)."""
    from tvm import relax

    return relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]})


@dataclass(frozen=True)
class PassSpec:
    """One Relax pass of the build pipeline, named as in `tvm.relax.transform`; ``make``
    builds a pass that takes arguments, else ``tvm.relax.transform.<name>()`` is used.
    The builder lists only the passes a build runs. The name a pass instrument reports
    is ``create().info.name``: the same, but for DecomposeOpsForInference ("DecomposeOps")."""

    name: str
    optional: bool  # a stack may switch it off or on, a pass mutant may toggle it
    min_level: int | None = 0
    make: Callable | None = None

    def create(self):
        """A fresh instance of the pass (every build makes its own)."""
        from tvm import relax

        return self.make() if self.make is not None else getattr(relax.transform, self.name)()


PIPELINE: tuple[PassSpec, ...] = (
    PassSpec("ConvertLayout", True, None, _to_nhwc),
    PassSpec("FastMathTransform", True, 3),
    PassSpec("FoldBatchnormToConv2D", True, None),
    PassSpec("DecomposeOpsForInference", True, None),
    PassSpec("FuseTransposeMatmul", True, None),
    PassSpec("LegalizeOps", False),
    PassSpec("AnnotateTIROpPattern", False),
    PassSpec("FoldConstant", True, 1),
    PassSpec("FuseOps", True, 2),
    PassSpec("FuseTIR", True, 2),
)
OPT_LEVELS: tuple[int, ...] = (0, 1, 2, 3)
# Derived from the table, never written out: the passes the opt levels run, which a stack
# may disable by name (the others are needed to build at all), by the lowest level that
# runs them; and the passes no opt level runs (a stack's required_passes or a pass_enable
# mutant switches them on; each builds digits and resnet18 to the same top-1, rel L2 <= 6e-7).
OPTIONAL_PASSES: tuple[str, ...] = tuple(
    p.name for p in sorted((p for p in PIPELINE if p.optional and p.min_level is not None),
                           key=lambda p: (p.min_level, PIPELINE.index(p))))
OPT_IN_PASSES: tuple[str, ...] = tuple(p.name for p in PIPELINE if p.optional and p.min_level is None)
# Every pass a stack may name in required_passes; build keys list passes in this order.
SWITCHABLE_PASSES: tuple[str, ...] = OPTIONAL_PASSES + OPT_IN_PASSES


def level_passes(level: int, optional_only: bool = True) -> tuple[str, ...]:
    """The passes opt level ``level`` runs: optional ones in `OPTIONAL_PASSES` order, or
    (``optional_only=False``) every pipeline pass in pipeline order."""
    runs = {p.name for p in PIPELINE if not p.optional or (p.min_level is not None and p.min_level <= level)}
    if optional_only:
        return tuple(name for name in OPTIONAL_PASSES if name in runs)
    return tuple(p.name for p in PIPELINE if p.name in runs)


OPT_LEVEL_PASSES: dict[int, tuple[str, ...]] = {level: level_passes(level) for level in OPT_LEVELS}


# TIR lowering options: short names (a stack's ``tir_options`` keys, the
# ``pass_tir_option`` sites) for the PassContext config entries TVM 0.27's TIR pipeline
# (`tvm.s_tir.pipeline`) reads. Each changes the LLVM code of digits and keeps its
# outputs bit-identical. ``field`` names an entry of a config record (tirx.UnrollLoop).


@dataclass(frozen=True)
class TirOption:
    """One TIR lowering option: its PassContext key, TVM's default and the mutant's value."""

    name: str
    config: str
    field: str | None
    default: bool | int  # TVM's own: setting it is the default build
    mutant: bool | int  # what the pass_tir_option mutant sets
    doc: str

    def check(self, value) -> str | None:
        """Why ``value`` is no value of this option (None when it is one)."""
        if isinstance(self.default, bool):
            return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"expected an integer >= 0, got {value!r}"
        return None


TIR_OPTIONS: tuple[TirOption, ...] = (
    TirOption("disable_vectorize", "tirx.disable_vectorize", None, False, True,
              "vectorize-marked loops lowered as serial loops (LLVM may still vectorise)"),
    TirOption("disable_storage_rewrite", "tirx.disable_storage_rewrite", None, False, True,
              "StorageRewrite skipped: no buffer reuse or merging"),
    TirOption("disable_cse_tir", "tirx.disable_cse_tir", None, False, True,
              "CommonSubexprElim skipped: no TIR common-subexpression elimination"),
    TirOption("unroll_max_step", "tirx.UnrollLoop", "auto_max_step", 0, 16,
              "loops of at most this many steps unrolled automatically"),
    TirOption("unroll_explicit", "tirx.UnrollLoop", "explicit_unroll", True, False,
              "false: unroll-marked loops stay loops (TVM's LLVM codegen ignores the hint)"),
)
TIR_OPTION_NAMES: tuple[str, ...] = tuple(o.name for o in TIR_OPTIONS)
_TIR_BY_NAME = {o.name: o for o in TIR_OPTIONS}


def tir_option_error(name: str, value) -> str | None:
    """Why ``name = value`` is no TIR option setting (None when it is one)."""
    option = _TIR_BY_NAME.get(name)
    if option is None:
        return f"unknown TIR option {name!r} (known: {', '.join(TIR_OPTION_NAMES)})"
    return option.check(value)


def tir_options_canonical(options) -> tuple[tuple[str, bool | int], ...]:
    """Settings (a dict or name/value pairs) sorted by name, TVM's defaults dropped:
    one build, one spelling (build keys compare equal). Raises ValueError."""
    items = options.items() if isinstance(options, dict) else [tuple(pair) for pair in options]
    out = {}
    for name, value in items:
        error = tir_option_error(name, value)
        if error:
            raise ValueError(error)
        out[name] = value
    return tuple(sorted((n, v) for n, v in out.items() if v != _TIR_BY_NAME[n].default))


def tir_config(options) -> dict:
    """The PassContext ``config`` for canonical TIR option settings."""
    config: dict = {}
    for name, value in options:
        option = _TIR_BY_NAME[name]
        if option.field is None:
            config[option.config] = value
        else:
            config.setdefault(option.config, {})[option.field] = value
    return config


class PassOperator(MutationOperator):
    """Base of the pass operators: the program is unchanged, its build options differ."""

    level = "pass"

    def choices(self) -> list[tuple[str, dict]]:
        raise NotImplementedError

    def sites(self, mod: tvm.IRModule) -> list[Site]:
        # the key is hashable (lists become tuples, nested ones too), like every Site key
        return [Site(i, text, tuple((k, _freeze(v)) for k, v in sorted(options.items())))
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
        return {k: _thaw(v) for k, v in site.key}

    def diff(self, original: tvm.IRModule, mutated: tvm.IRModule, site: Site) -> str:
        return f"build options: {self.build_options(site)}"

    def examples(self) -> list[Example]:
        return list(EXAMPLES.get(self.name, ()))


def _freeze(value):
    """Lists as tuples, all the way down: option values made hashable for a Site key."""
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def _thaw(value):
    """The inverse of `_freeze`: the JSON-friendly options a mutant carries."""
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


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


class EnablePass(PassOperator):
    name = "pass_enable"
    doc = "Build with one opt-in Relax pass switched on (NHWC layout, batch-norm folding, ...)."

    def choices(self):
        return [(f"enable {name}", {"required_pass": [name]}) for name in OPT_IN_PASSES]


class TirOptionSwitch(PassOperator):
    name = "pass_tir_option"
    doc = "Build with one TIR lowering option changed (no vectorize, unrolling, no CSE, ...)."

    def choices(self):
        return [(f"tir {o.name}={json.dumps(o.mutant)}: {o.doc}", {"tir_options": [[o.name, o.mutant]]})
                for o in TIR_OPTIONS]


OPERATORS = (OptLevel(), DisablePass(), FastMath(), EnablePass(), TirOptionSwitch())


# Worked examples (`base.Example`) on `mutators.examples.PROGRAMS`, by operator name. The
# program is unchanged, so there is no ``before``; ``after`` is the build option set.
EXAMPLES: dict[str, tuple[Example, ...]] = {
    "pass_opt_level": (Example("cnn", 0, "", "{'opt_level': 0}"),),
    "pass_disable": (Example("cnn", 1, "", "{'disabled_pass': ['FuseOps']}"),),
    "pass_fast_math": (Example("arith", 0, "", "{'fast_math': True}"),),
    "pass_enable": (Example("cnn", 0, "", "{'required_pass': ['ConvertLayout']}"),),
    "pass_tir_option": (Example("cnn", 0, "", "{'tir_options': [['disable_vectorize', True]]}"),),
}
