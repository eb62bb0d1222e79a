"""Pass-level mutation operators: the options they give, applied through the product's own
builder (`mutatenn.build.build_artifact`), change which passes run and what is built."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import tvm
import tvm_ffi
from conftest import PassRecorder
from tvm import relax

from mutatenn.build import BuildOptions, build_artifact, parse_target
from mutators import PENDING, make_mutant, passes
from mutators.base import Site
from tests._models import conv_pool_fc_module

TARGET = parse_target("cpu-generic")
OPTIONAL = set(passes.OPTIONAL_PASSES)
# The Relax passes a pass mutant's site may name: the optional ones and the lowering every build needs.
RELAX_PASSES = OPTIONAL | {"LegalizeOps", "AnnotateTIROpPattern"}
# A few inputs: fast math changes the softmax by an ulp or so, not necessarily on every input.
INPUTS = np.random.default_rng(0).standard_normal((4, 1, 3, 8, 8)).astype("float32")


@pytest.fixture(scope="module")
def tiny():
    return conv_pool_fc_module(softmax=True)  # softmax: fast-math has work



class Built:
    """One build through the product: the executable, the passes run, the lowered program."""

    def __init__(self, mod, options: BuildOptions):
        # The product's Relax pipeline runs as one module pass: the module after it is the program built.
        recorder = PassRecorder(keep=["MutateNNPipeline"])
        self.options = options
        self.executable = build_artifact(mod, TARGET, options, instruments=[recorder])
        self.ran = recorder.names
        self.optional = [n for n in self.ran if n in OPTIONAL]
        self.relax = [n for n in self.ran if n in RELAX_PASSES]
        # FastMathTransform rewrites Relax calls: it must run before LegalizeOps turns them into TIR.
        if "FastMathTransform" in self.ran:
            assert self.ran.index("FastMathTransform") < self.ran.index("LegalizeOps")
        assert "MutateNNPipeline" in recorder.after, "the product's pipeline was not seen running"
        self.final = recorder.after["MutateNNPipeline"]
        funcs = {gv.name_hint: f for gv, f in self.final.functions.items()}
        found: list[str] = []
        tvm_ffi.structural_walk(self.final["main"], (tvm.ir.GlobalVar, lambda gv: found.append(gv.name_hint)))
        # The functions main calls: kernels (PrimFuncs) and, when FuseTIR did not run, Relax functions.
        self.kernels = {n for n in found if isinstance(funcs[n], tvm.tirx.PrimFunc)}
        self.relax_calls = {n for n in found if not isinstance(funcs[n], tvm.tirx.PrimFunc)}
        self.called = self.kernels | self.relax_calls

    def outputs(self) -> np.ndarray:
        vm = relax.VirtualMachine(self.executable, tvm.cpu())
        out = []
        for x in INPUTS:
            y = vm["main"](tvm.runtime.tensor(x))
            out.append((y[0] if not hasattr(y, "numpy") else y).numpy())
        return np.stack(out)


def mutant_options(mod, op, site: Site, base: BuildOptions) -> BuildOptions:
    """The stack's options changed by the pass mutant at ``site``, as the campaign does."""
    mutant = make_mutant(mod, op.name, site.index, with_diff=True)
    assert mutant.status == PENDING and mutant.level == "pass"
    assert mutant.mod is mod  # the program is not touched, only its build
    assert mutant.build_options == op.build_options(site)
    assert mutant.diff_text == f"build options: {op.build_options(site)}"
    return base.with_overrides(mutant.build_options)


def test_operator_contract(tiny):
    names = [op.name for op in passes.OPERATORS]
    assert {"pass_opt_level", "pass_disable", "pass_fast_math", "pass_enable", "pass_tir_option"} <= set(names)
    assert len(names) == len(set(names))
    for op in passes.OPERATORS:
        assert re.fullmatch(r"pass_[a-z0-9_]+", op.name) and op.level == "pass"
        assert op.doc and "\n" not in op.doc
        sites = op.sites(tiny)
        again = op.sites(tiny)
        # Sites are values: enumerating twice gives equal sites with equal hashes, usable as keys.
        assert sites == again and [hash(s) for s in sites] == [hash(s) for s in again]
        assert {s: s.index for s in sites} == {s: s.index for s in again}
        assert len(set(sites)) == len(sites) and [s.index for s in sites] == list(range(len(sites)))
        assert op.sites(None) == sites  # a build mutant does not depend on the program
        overrides = set()
        for site in sites:
            assert op.apply(tiny, site) is tiny
            options = op.build_options(site)
            assert set(options) <= {"opt_level", "disabled_pass", "fast_math", "required_pass", "tir_options"}
            # The key round-trips: the options rebuild the site's key ...
            assert tuple((k, frozen(v)) for k, v in sorted(options.items())) == site.key
            # ... and the product accepts them and applies exactly them.
            applied = BuildOptions().with_overrides(options)
            for key, value in options.items():
                assert getattr(applied, key) == frozen(value)
            overrides.add(applied)
        assert len(overrides) == len(sites)  # every site builds differently
    counts = {op.name: len(op.sites(tiny)) for op in passes.OPERATORS}
    # One site per level, per optional or opt-in pass, per TIR option: a pass added to the table adds one.
    assert counts["pass_opt_level"] == 4 and counts["pass_fast_math"] == 2
    assert counts["pass_disable"] == len(passes.OPTIONAL_PASSES) >= 4
    assert counts["pass_enable"] == len(passes.OPT_IN_PASSES) and counts["pass_tir_option"] == len(passes.TIR_OPTIONS)


def frozen(value):
    """A site key's form of an option value: lists as tuples, nested ones too."""
    return tuple(frozen(v) for v in value) if isinstance(value, list) else value


def test_constants_are_nested_and_agree_with_the_builder():
    levels = sorted(passes.OPT_LEVEL_PASSES)
    assert levels == [0, 1, 2, 3]
    for low, high in zip(levels, levels[1:]):
        assert set(passes.OPT_LEVEL_PASSES[low]) < set(passes.OPT_LEVEL_PASSES[high])
    assert set(passes.OPTIONAL_PASSES) <= set(passes.OPT_LEVEL_PASSES[3])
    # Derived from the table: the opt-level passes by the lowest level that runs them.
    assert passes.OPTIONAL_PASSES == ("FoldConstant", "FuseOps", "FuseTIR", "FastMathTransform")
    for level in levels:
        # What a pass mutant's site says the level runs is what the builder runs.
        claimed = tuple(p for p in passes.OPT_LEVEL_PASSES[level] if p in OPTIONAL)
        assert BuildOptions(opt_level=level).passes() == tuple(p for p in passes.OPTIONAL_PASSES if p in claimed)
    for name in set(passes.OPT_LEVEL_PASSES[3]):
        assert getattr(relax.transform, name)().info.name == name


def test_opt_levels_run_their_passes(tiny):
    op = passes.OptLevel()
    before = tvm_ffi.structural_hash(tiny)
    built = {}
    for site in op.sites(tiny):
        options = mutant_options(tiny, op, site, BuildOptions(opt_level=2))
        level = op.build_options(site)["opt_level"]
        assert options.opt_level == level
        b = built[level] = Built(tiny, options)
        assert set(b.optional) == set(passes.OPT_LEVEL_PASSES[level]) == set(options.passes()), (level, b.ran)
        # The site says which passes this level runs, in order: exactly those run.
        described = re.fullmatch(r"opt_level=\d \((.*)\)", site.description).group(1).split(", ")
        assert b.relax == described, (site.description, b.ran)
        # The passes every build needs run at every level.
        assert {"LegalizeOps", "AnnotateTIROpPattern", "VMShapeLower"} <= set(b.ran)
    assert tvm_ffi.structural_hash(tiny) == before

    # What the passes did shows in the built program (the kernels main calls).
    assert not any(n.startswith("fused_") for n in built[0].called | built[1].called)
    assert "transpose" in built[0].kernels and "transpose" not in built[1].kernels  # folded at O1
    for level in (2, 3):
        assert {"fused_conv2d_add_relu", "fused_matmul_add1"} <= built[level].kernels
        assert not {"conv2d", "relu", "matmul"} & built[level].kernels
    assert len(built[2].kernels) < len(built[1].kernels) < len(built[0].kernels)
    assert all(not b.relax_calls for b in built.values())
    assert "softmax" in built[2].kernels and "fast_softmax" not in built[2].kernels
    assert "fast_softmax" in built[3].kernels and "softmax" not in built[3].kernels
    for a, b in ((0, 1), (1, 2), (2, 3)):
        assert not tvm_ffi.structural_equal(built[a].final, built[b].final), (a, b)

    outputs = {level: b.outputs() for level, b in built.items()}
    for level in (1, 2):  # exact rewrites: the same results as unoptimised code
        np.testing.assert_allclose(outputs[level], outputs[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs[3], outputs[0], rtol=1e-3, atol=1e-4)
    assert not np.array_equal(outputs[3], outputs[2])  # fast math is not exact


def test_disabled_pass_does_not_run_and_leaves_its_work_undone(tiny):
    op = passes.DisablePass()
    base = BuildOptions(opt_level=3)
    baseline = Built(tiny, base)
    in_order = baseline.optional  # pipeline order
    assert set(in_order) == OPTIONAL and len(in_order) == len(OPTIONAL)
    reference = baseline.outputs()
    assert not baseline.relax_calls
    # What each pass leaves undone when it is disabled (the baseline shows none of it).
    undone = {
        "FoldConstant": lambda b: "transpose" in b.kernels,  # the weight transpose runs at run time
        "FuseOps": lambda b: not any(n.startswith("fused_") for n in b.called) and {"conv2d", "relu"} <= b.kernels,
        "FuseTIR": lambda b: "fused_conv2d_add_relu" in b.relax_calls,  # fused groups left as Relax functions
        "FastMathTransform": lambda b: "softmax" in b.kernels and "fast_softmax" not in b.kernels,
    }
    assert set(undone) == set(passes.OPTIONAL_PASSES)
    for name, check in undone.items():
        assert not check(baseline), name
    for site in op.sites(tiny):
        options = mutant_options(tiny, op, site, base)
        (name,) = op.build_options(site)["disabled_pass"]
        assert options.disabled_pass == (name,) and name not in options.passes()
        b = Built(tiny, options)
        assert name not in b.ran
        assert b.optional == [p for p in in_order if p != name]
        assert undone[name](b), (name, b.kernels, b.relax_calls)
        assert not any(check(b) for other, check in undone.items() if other != name), name
        assert not tvm_ffi.structural_equal(b.final, baseline.final), name
        np.testing.assert_allclose(b.outputs(), reference, rtol=1e-3, atol=1e-4)


def test_fast_math_switch_changes_the_program_and_its_bits(tiny):
    op = passes.FastMath()
    on_site, off_site = op.sites(tiny)
    assert op.build_options(on_site) == {"fast_math": True} and op.build_options(off_site) == {"fast_math": False}
    results = {}
    for level in (2, 3):
        base = BuildOptions(opt_level=level)
        for site, switch in ((on_site, "on"), (off_site, "off")):
            options = mutant_options(tiny, op, site, base)
            assert options.uses_fast_math == (switch == "on")
            results[(level, switch)] = Built(tiny, options)
    plain = {level: Built(tiny, BuildOptions(opt_level=level)) for level in (2, 3)}

    for level in (2, 3):
        on, off = results[(level, "on")], results[(level, "off")]
        assert "FastMathTransform" in on.ran and "FastMathTransform" not in off.ran
        assert "fast_softmax" in on.kernels and "softmax" not in on.kernels
        assert "softmax" in off.kernels and "fast_softmax" not in off.kernels
        assert not tvm_ffi.structural_equal(on.final, off.final)
        out_on, out_off = on.outputs(), off.outputs()
        # Fast softmax is an approximation: different bits, close values, still a distribution.
        assert not np.array_equal(out_on, out_off)
        np.testing.assert_allclose(out_on, out_off, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out_on.sum(axis=-1), 1.0, rtol=1e-5)
        assert (out_on.argmax(axis=-1) == out_off.argmax(axis=-1)).all()

    # The switch is all that separates O2 from O3 here: the same programs, the same bits.
    assert tvm_ffi.structural_equal(results[(2, "on")].final, plain[3].final)
    assert tvm_ffi.structural_equal(results[(3, "off")].final, plain[2].final)
    np.testing.assert_array_equal(results[(2, "on")].outputs(), plain[3].outputs())
    np.testing.assert_array_equal(results[(3, "off")].outputs(), plain[2].outputs())


def test_sites_are_plain_values():
    site = passes.DisablePass().sites(None)[0]
    assert isinstance(site, Site) and site.key == (("disabled_pass", ("FoldConstant",)),)
    twin = Site(0, "disable FoldConstant", (("disabled_pass", ("FoldConstant",)),))
    assert site == twin and hash(site) == hash(twin) and {site: 1}[twin] == 1
    other = passes.DisablePass().sites(None)[1]
    assert other != site and other.key == (("disabled_pass", ("FuseOps",)),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        site.index = 5
    assert passes.DisablePass().build_options(twin) == {"disabled_pass": ["FoldConstant"]}
    assert BuildOptions().with_overrides(passes.DisablePass().build_options(twin)).disabled_pass == ("FoldConstant",)
