"""The opt-in Relax passes and the TIR lowering options (`mutators.passes.OPT_IN_PASSES`,
`TIR_OPTIONS`): each builds digits through the product's builder with the default
build's results, is seen doing its work (a pass instrument), reaches the build key, a
stack's config and a pass mutant."""
from __future__ import annotations

import functools
import re

import numpy as np
import pytest
import tvm
import tvm_ffi
from conftest import PassRecorder, campaign_table
from tvm import relax

import mutators
from mutatenn.build import BuildOptions, build_artifact, build_with_kernels, parse_target
from mutatenn.config import parse_config
from mutatenn.errors import ConfigError, InputError
from mutators import PENDING, passes

TARGET = parse_target("cpu-generic")
# The name a pass instrument reports for each pass of the table.
REPORTED = {spec.name: spec.create().info.name for spec in passes.PIPELINE}
INPUTS = np.random.default_rng(0).standard_normal((4, 1, 1, 8, 8)).astype("float32")


def outputs(executable, inputs) -> np.ndarray:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = []
    for x in inputs:
        y = vm["main"](tvm.runtime.tensor(x))
        out.append((y[0] if not hasattr(y, "numpy") else y).numpy())
    return np.stack(out)


def assert_same_results(got: np.ndarray, ref: np.ndarray) -> None:
    """The default build's results: relative L2 within 1e-5 and the same top-1."""
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) <= 1e-5
    assert (got.argmax(axis=-1) == ref.argmax(axis=-1)).all()


def llvm_ir(executable) -> str:
    """The kernels' LLVM IR; TBAA metadata names host addresses, which differ every build."""
    return re.sub(r"0x[0-9a-f]+", "0x", executable.mod.imports[0].inspect_source("ll"))


def count(mod, node_type, where=None) -> int:
    found = []
    tvm_ffi.structural_walk(mod, (node_type, lambda node, *_: found.append(node)))
    return len([n for n in found if where is None or where(n)])


def relax_calls(mod, op_name: str, where=None) -> int:
    """Calls of ``op_name`` in ``main`` (helper functions a pass leaves behind are not run)."""
    return count(mod["main"], relax.Call, lambda c: getattr(c.op, "name", None) == op_name and (where is None or where(c)))


@functools.lru_cache(maxsize=None)
def conv_bn_module():
    """conv2d without bias straight into batch_norm (torchvision's pattern, which digits
    lacks: its convolutions add a bias first), then a linear layer."""
    import torch

    from mutatenn.loading import program_from_torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 5)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 1.5)
        model[1].weight.uniform_(0.5, 1.5)
    return program_from_torch(model, (1, 1, 8, 8), name="conv-bn").mod


@pytest.fixture(scope="module")
def reference(digits_program):
    """The default build of digits and of the conv+bn model: their outputs and LLVM IR."""
    out = {}
    for name, mod in (("digits", digits_program.mod), ("conv_bn", conv_bn_module())):
        executable = build_artifact(mod, TARGET, BuildOptions())
        out[name] = (outputs(executable, INPUTS), llvm_ir(executable))
    return out


# What each opt-in pass does, read from the module right after it ran.
PASS_WORK = {
    "ConvertLayout": lambda m: relax_calls(m, "relax.nn.conv2d") > 0 and relax_calls(
        m, "relax.nn.conv2d", lambda c: (c.attrs.data_layout, c.attrs.kernel_layout) != ("NHWC", "HWIO")) == 0,
    "FoldBatchnormToConv2D": lambda m: relax_calls(m, "relax.nn.batch_norm") == 0,
    "DecomposeOpsForInference": lambda m: relax_calls(m, "relax.nn.batch_norm") == 0,
    "FuseTransposeMatmul": lambda m: relax_calls(m, "relax.matmul") == 0,
}


def test_the_pass_table_names_passes_as_tvm_does():
    assert set(PASS_WORK) == set(passes.OPT_IN_PASSES)
    for spec in passes.PIPELINE:
        assert hasattr(relax.transform, spec.name)
    # PassContext(disabled_pass=...) switches the opt-level passes off by these names ...
    assert all(REPORTED[name] == name for name in passes.OPTIONAL_PASSES)
    # ... and could not switch this one off: the builder leaves passes out instead.
    assert {n: r for n, r in REPORTED.items() if n != r} == {"DecomposeOpsForInference": "DecomposeOps"}
    order = [spec.name for spec in passes.PIPELINE]
    # ConvertLayout segfaults on FoldBatchnormToConv2D's output (a scalar PrimValue operand).
    assert order.index("ConvertLayout") < order.index("FoldBatchnormToConv2D")
    assert max(order.index(p) for p in passes.OPT_IN_PASSES) < order.index("LegalizeOps")
    for level in passes.OPT_LEVELS:
        assert not set(passes.OPT_IN_PASSES) & set(passes.level_passes(level, optional_only=False))


@pytest.mark.parametrize("name", passes.OPT_IN_PASSES)
def test_opt_in_pass_runs_does_its_work_and_keeps_results(digits_program, reference, name):
    model = "conv_bn" if name == "FoldBatchnormToConv2D" else "digits"
    mod = conv_bn_module() if model == "conv_bn" else digits_program.mod
    reported = REPORTED[name]
    for level in passes.OPT_LEVELS:  # off at every opt level
        plain = PassRecorder()
        build_artifact(mod, TARGET, BuildOptions(opt_level=level), [plain])
        assert reported not in plain.names and "LegalizeOps" in plain.names
    recorder = PassRecorder(keep=[reported])
    options = BuildOptions(required_pass=(name,))
    assert name in options.passes()
    executable = build_artifact(mod, TARGET, options, [recorder])
    assert recorder.names.count(reported) == 1
    assert recorder.names.index(reported) < recorder.names.index("LegalizeOps")
    assert PASS_WORK[name](recorder.after[reported]), name
    assert not PASS_WORK[name](mod)  # the check fails on the imported program
    ref, ref_ir = reference[model]
    assert_same_results(outputs(executable, INPUTS), ref)
    assert llvm_ir(executable) != ref_ir


def test_fold_batchnorm_leaves_digits_and_nhwc_alone(digits_program):
    """digits' convolutions add a bias before batch_norm, and ConvertLayout (which runs
    first) leaves no NCHW convolution: nothing for the pass to fold either time."""
    recorder = PassRecorder(keep=["FoldBatchnormToConv2D"])
    build_artifact(digits_program.mod, TARGET, BuildOptions(required_pass=("FoldBatchnormToConv2D",)), [recorder])
    assert relax_calls(recorder.after["FoldBatchnormToConv2D"], "relax.nn.batch_norm") == 2
    both = BuildOptions(required_pass=("FoldBatchnormToConv2D", "ConvertLayout"))
    build_artifact(conv_bn_module(), TARGET, both, [recorder])
    assert relax_calls(recorder.after["FoldBatchnormToConv2D"], "relax.nn.batch_norm") == 1


@pytest.mark.parametrize("level", [0, 2])
def test_all_opt_in_passes_together(digits_program, reference, level):
    options = BuildOptions(opt_level=level, required_pass=passes.OPT_IN_PASSES)
    for model, mod in (("digits", digits_program.mod), ("conv_bn", conv_bn_module())):
        recorder = PassRecorder()
        executable = build_artifact(mod, TARGET, options, [recorder])
        opt_in = [REPORTED[p] for p in passes.OPT_IN_PASSES]
        assert [n for n in recorder.names if n in opt_in] == opt_in
        assert_same_results(outputs(executable, INPUTS), reference[model][0])


def _for_loops(mod, kind=None) -> int:
    return count(mod, tvm.tirx.For, lambda f: kind is None or f.kind == kind)


# What each TIR option changes, read from the passes run and the TIR after them (digits,
# default schedule): (recorded passes, TIR after each kept pass) -> number compared.
TIR_PROBES = {
    "disable_vectorize": ("tirx.VectorizeLoop", lambda names, after: count(after["tirx.VectorizeLoop"], tvm.tirx.Ramp),
                          lambda ref, got: ref > 0 and got == 0),
    "disable_storage_rewrite": (None, lambda names, after: "tirx.StorageRewrite" in names,
                                lambda ref, got: ref and not got),
    "disable_cse_tir": (None, lambda names, after: "tirx.CommonSubexprElim" in names,
                        lambda ref, got: ref and not got),
    "unroll_max_step": ("tirx.UnrollLoop", lambda names, after: _for_loops(after["tirx.UnrollLoop"]),
                        lambda ref, got: got < ref),
    "unroll_explicit": ("tirx.UnrollLoop",
                        lambda names, after: _for_loops(after["tirx.UnrollLoop"], tvm.tirx.ForKind.UNROLLED),
                        lambda ref, got: ref == 0 and got > 0),
}


@pytest.mark.parametrize("option", passes.TIR_OPTIONS, ids=lambda o: o.name)
def test_tir_option_changes_the_code_and_keeps_results(digits_program, reference, option):
    kept, measure, changed = TIR_PROBES[option.name]
    seen = {}
    for setting in ({}, {option.name: option.mutant}):
        recorder = PassRecorder(keep=[kept] if kept else [])
        options = BuildOptions(tir_options=setting)
        executable = build_artifact(digits_program.mod, TARGET, options, [recorder])
        seen[bool(setting)] = (measure(recorder.names, recorder.after), executable)
    assert changed(seen[False][0], seen[True][0]), (option.name, seen[False][0], seen[True][0])
    ref, ref_ir = reference["digits"]
    assert_same_results(outputs(seen[True][1], INPUTS), ref)
    assert llvm_ir(seen[True][1]) != ref_ir


def test_shared_kernel_builds_honour_tir_options(digits_program, reference):
    """build_with_kernels lowers TIR itself: the options must reach it too."""
    options = BuildOptions(tir_options={"disable_vectorize": True})
    shared, _kernels = build_with_kernels(digits_program.mod, TARGET, options)
    assert llvm_ir(shared) == llvm_ir(build_artifact(digits_program.mod, TARGET, options))
    assert llvm_ir(shared) != reference["digits"][1]
    assert_same_results(outputs(shared, INPUTS), reference["digits"][0])


def test_build_options_keys_labels_and_overrides():
    default = BuildOptions()
    assert default.key() == '{"passes": ["FoldConstant", "FuseOps", "FuseTIR"], "schedule": "default"}'
    # TVM's defaults spelled out are the default build; a dict and pairs are one value.
    assert BuildOptions(tir_options={"disable_vectorize": False, "unroll_explicit": True}) == default
    a = BuildOptions(tir_options={"unroll_max_step": 16, "disable_vectorize": True})
    b = BuildOptions(tir_options=[["disable_vectorize", True], ["unroll_max_step", 16]])
    assert a == b and hash(a) == hash(b) and a.key() == b.key()
    assert a.tir_options == (("disable_vectorize", True), ("unroll_max_step", 16))
    assert '"tir": {"disable_vectorize": true, "unroll_max_step": 16}' in a.key()
    assert a.label() == "O2,disable_vectorize,unroll_max_step=16"
    required = BuildOptions(required_pass=("ConvertLayout",))
    assert required.passes() == ("FoldConstant", "FuseOps", "FuseTIR", "ConvertLayout")
    assert required.key() != default.key() and required.label() == "O2,+ConvertLayout"
    # A mutant's overrides add to what the stack switched on.
    stack = BuildOptions(required_pass=("ConvertLayout",), tir_options={"disable_vectorize": True})
    mutant = stack.with_overrides({"required_pass": ["FuseTransposeMatmul"], "tir_options": [["unroll_max_step", 16]]})
    assert mutant.required_pass == ("ConvertLayout", "FuseTransposeMatmul")
    assert dict(mutant.tir_options) == {"disable_vectorize": True, "unroll_max_step": 16}
    assert stack.with_overrides({"tir_options": [["disable_vectorize", True]]}).key() == stack.key()
    assert stack.with_overrides({"tir_options": {"disable_vectorize": False}}).tir_options == ()
    for bad, message in [({"tir_options": {"vectorise": True}}, "unknown TIR option 'vectorise'"),
                         ({"tir_options": {"disable_vectorize": 1}}, "expected true or false"),
                         ({"tir_options": {"unroll_max_step": -1}}, "integer >= 0"),
                         ({"required_pass": ["CombineParallelMatmul"]}, "unknown pass")]:
        with pytest.raises(InputError, match=re.escape(message)):
            default.with_overrides(bad)


def _config(**stack) -> dict:
    return campaign_table(images="digits:4", stacks=[{"target": "cpu", **stack}])


def test_stack_config_takes_required_passes_and_tir_options():
    config = parse_config(_config(required_passes=["ConvertLayout", "FuseTransposeMatmul"],
                                  tir_options={"disable_vectorize": True, "unroll_max_step": 8}))
    (stack,) = config.stacks
    assert stack.options.required_pass == ("ConvertLayout", "FuseTransposeMatmul")
    assert stack.options.tir_options == (("disable_vectorize", True), ("unroll_max_step", 8))
    assert stack.name == "cpu-O2,+ConvertLayout,+FuseTransposeMatmul,disable_vectorize,unroll_max_step=8"
    assert stack.describe()["tir_options"] == {"disable_vectorize": True, "unroll_max_step": 8}
    assert parse_config(_config()).stacks[0].options == BuildOptions()


@pytest.mark.parametrize("stack, key, message", [
    ({"required_passes": ["NoSuchPass"]}, "stacks[0].required_passes", "unknown pass 'NoSuchPass'"),
    ({"required_passes": "ConvertLayout"}, "stacks[0].required_passes", "expected a list"),
    ({"tir_options": {"vectorize": False}}, "stacks[0].tir_options.vectorize", "unknown TIR option"),
    ({"tir_options": {"disable_vectorize": "yes"}}, "stacks[0].tir_options.disable_vectorize", "true or false"),
    ({"tir_options": {"unroll_max_step": True}}, "stacks[0].tir_options.unroll_max_step", "integer >= 0"),
    ({"tir_options": {"unroll_max_step": -4}}, "stacks[0].tir_options.unroll_max_step", "integer >= 0"),
    ({"tir_options": ["disable_vectorize"]}, "stacks[0].tir_options", "expected a table"),
])
def test_stack_config_errors_name_the_key(stack, key, message):
    with pytest.raises(ConfigError) as err:
        parse_config(_config(**stack))
    text = str(err.value)
    assert len(text.splitlines()) == 1 and f"'{key}'" in text and message in text, text


def test_pass_mutants_switch_one_pass_or_option_each(digits_program):
    mutants = mutators.enumerate_mutants(digits_program.mod, operators=["pass_enable", "pass_tir_option"])
    by_op = {}
    for m in mutants:
        by_op.setdefault(m.operator, []).append(m)
        assert m.status == PENDING and m.level == "pass"
    assert [m.build_options for m in by_op["pass_enable"]] == [{"required_pass": [p]} for p in passes.OPT_IN_PASSES]
    assert [m.build_options for m in by_op["pass_tir_option"]] == \
        [{"tir_options": [[o.name, o.mutant]]} for o in passes.TIR_OPTIONS]
    stack = BuildOptions()
    keys = {stack.key()}
    for m in mutants:
        options = stack.with_overrides(m.build_options)
        keys.add(options.key())
        # On a stack that already has it, the mutant builds as the stack does.
        assert options.with_overrides(m.build_options) == options
    assert len(keys) == len(mutants) + 1  # every mutant is a build of its own
    assert len({m.hash for m in mutants}) == len(mutants)
