"""Pass-level mutation operators: the options they give are honoured by a pipeline."""
from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

from mutators import passes
from mutators.base import Site
from tests._models import conv_pool_fc_module

TARGET = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64"})


@pytest.fixture(scope="module")
def tiny():
    return conv_pool_fc_module(softmax=True)  # softmax: fast-math has work


@tvm.ir.instrument.pass_instrument
class PassRecorder:
    def __init__(self):
        self.names: list[str] = []

    def run_before_pass(self, mod, info):
        self.names.append(info.name)


def build(mod, options: dict):
    """A test-local builder honouring {"opt_level", "disabled_pass", "fast_math"}."""
    names = list(passes.OPT_LEVEL_PASSES[options.get("opt_level", 2)])
    if options.get("fast_math") is True and "FastMathTransform" not in names:
        names.insert(0, "FastMathTransform")
    if options.get("fast_math") is False and "FastMathTransform" in names:
        names.remove("FastMathTransform")
    relax_passes = [getattr(relax.transform, n)() for n in names]

    @tvm.transform.module_pass(opt_level=0)
    def pipeline(m, _ctx):
        with TARGET:
            seq = tvm.transform.Sequential(cpu_generic.library_dispatch_passes(TARGET) + relax_passes
                                           + cpu_generic.dataflow_lower_passes(TARGET)
                                           + cpu_generic.finalize_passes(TARGET))
            return seq(m)

    recorder = PassRecorder()
    with tvm.transform.PassContext(opt_level=3, disabled_pass=list(options.get("disabled_pass", [])),
                                   instruments=[recorder]):
        executable = tvm.compile(mod, target=TARGET, relax_pipeline=pipeline)
    return executable, recorder.names


def run(executable) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype("float32")
    out = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x))
    return (out[0] if not hasattr(out, "numpy") else out).numpy()


def test_operator_contract(tiny):
    names = [op.name for op in passes.OPERATORS]
    assert names == ["pass_opt_level", "pass_disable", "pass_fast_math"]
    for op in passes.OPERATORS:
        assert re.fullmatch(r"pass_[a-z0-9_]+", op.name) and op.level == "pass"
        assert op.doc and "\n" not in op.doc
        for site in op.sites(tiny):
            assert op.apply(tiny, site) is tiny
            options = op.build_options(site)
            assert set(options) <= {"opt_level", "disabled_pass", "fast_math"}
            hash(site)
    counts = {op.name: len(op.sites(tiny)) for op in passes.OPERATORS}
    assert counts == {"pass_opt_level": 4, "pass_disable": 4, "pass_fast_math": 2}


def test_constants_are_nested_and_optional_passes_exist():
    levels = sorted(passes.OPT_LEVEL_PASSES)
    assert levels == [0, 1, 2, 3]
    for low, high in zip(levels, levels[1:]):
        assert set(passes.OPT_LEVEL_PASSES[low]) < set(passes.OPT_LEVEL_PASSES[high])
    assert set(passes.OPTIONAL_PASSES) <= set(passes.OPT_LEVEL_PASSES[3])
    for name in set(passes.OPT_LEVEL_PASSES[3]):
        assert getattr(relax.transform, name)().info.name == name


def test_opt_levels_run_their_passes(tiny):
    op = passes.OptLevel()
    before = tvm_ffi.structural_hash(tiny)
    outputs = {}
    for site in op.sites(tiny):
        options = op.build_options(site)
        executable, ran = build(tiny, options)
        for name in passes.OPTIONAL_PASSES:
            assert (name in ran) == (name in passes.OPT_LEVEL_PASSES[options["opt_level"]]), (options, name)
        outputs[options["opt_level"]] = run(executable)
    assert tvm_ffi.structural_hash(tiny) == before
    for level in (1, 2):  # same program: exact levels agree closely
        np.testing.assert_allclose(outputs[level], outputs[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs[3], outputs[0], rtol=1e-3, atol=1e-4)


def test_disabled_pass_does_not_run(tiny):
    op = passes.DisablePass()
    _, baseline = build(tiny, {"opt_level": 3})
    for site in op.sites(tiny):
        options = op.build_options(site)
        (name,) = options["disabled_pass"]
        assert name in baseline
        executable, ran = build(tiny, {"opt_level": 3, **options})
        assert name not in ran
        assert all(other in ran for other in passes.OPTIONAL_PASSES if other != name)
        assert np.isfinite(run(executable)).all()


def test_fast_math_switch(tiny):
    op = passes.FastMath()
    on, off = (op.build_options(s) for s in op.sites(tiny))
    assert on == {"fast_math": True} and off == {"fast_math": False}
    exe_on, ran_on = build(tiny, {"opt_level": 2, **on})
    exe_off, ran_off = build(tiny, {"opt_level": 3, **off})
    assert "FastMathTransform" in ran_on and "FastMathTransform" not in ran_off
    # fast softmax is an approximation of softmax
    np.testing.assert_allclose(run(exe_on), run(exe_off), rtol=1e-3, atol=1e-4)


def test_sites_are_plain_values():
    site = passes.DisablePass().sites(None)[0]
    assert isinstance(site, Site) and site.key == (("disabled_pass", ("FoldConstant",)),)
