"""Targets, explicit opt-level pipelines, and TVM outputs against the frameworks themselves."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import tvm
from conftest import PassRecorder

from mutatenn.build import BuildOptions, build_artifact, parse_target
from mutatenn.errors import InputError
from mutatenn.execute import input_batch, run_variant
from mutatenn.images import load_image_set
from mutatenn.loading import load_program
from mutatenn.runners import parse_variant, parse_variant_list
from mutators.passes import OPT_LEVEL_PASSES, OPTIONAL_PASSES


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_each_opt_level_runs_exactly_its_documented_passes(digits_program, level):
    recorder = PassRecorder()
    build_artifact(digits_program.mod, parse_target("cpu-generic"), BuildOptions(opt_level=level), [recorder])
    ran = [name for name in recorder.names if name in OPTIONAL_PASSES]
    assert set(ran) == set(OPT_LEVEL_PASSES[level])
    assert "LegalizeOps" in recorder.names and "VMShapeLower" in recorder.names


def test_disabled_and_required_passes_are_honoured(digits_program):
    recorder = PassRecorder()
    options = BuildOptions(opt_level=2, disabled_pass=("FuseOps",), required_pass=("FastMathTransform",))
    build_artifact(digits_program.mod, parse_target("cpu"), options, [recorder])
    ran = {name for name in recorder.names if name in OPTIONAL_PASSES}
    assert ran == {"FoldConstant", "FuseTIR", "FastMathTransform"}
    assert BuildOptions(opt_level=3, fast_math=False).passes() == ("FoldConstant", "FuseOps", "FuseTIR")


def test_named_targets_are_dicts_with_explicit_cpus():
    from mutatenn.build import host_cpu_name

    assert parse_target("cpu-generic").spec == {"kind": "llvm", "mcpu": "x86-64"}
    assert parse_target("cpu").spec["mcpu"] == host_cpu_name() != "native"
    assert parse_target("cpu-avx512").spec["mcpu"] == "skylake-avx512"
    rpc = parse_target("rpc://10.1.2.3:9090/cpu-avx2")
    assert (rpc.device, rpc.rpc_host, rpc.rpc_port, rpc.spec["mcpu"]) == ("rpc", "10.1.2.3", 9090, "haswell")
    for bad, msg in [("gpu", "unknown target"), ("rpc:/x", "bad RPC address"), ("rpc://h:99999", "port must be")]:
        with pytest.raises(InputError, match=msg):
            parse_target(bad)
    with pytest.raises(InputError, match="unknown variant"):
        parse_variant_list("tvm:cpu,tensorrt")
    assert parse_variant("tvm:rpc://127.0.0.1:9090:O3").options.opt_level == 3


def test_cuda_builds_without_a_gpu_and_refuses_to_run(digits_program):
    target = parse_target("cuda")
    executable = build_artifact(digits_program.mod, target, BuildOptions())
    # The device code is CUDA: the executable imports a module of kind "cuda" under the host code.
    def kinds(module):
        return [module.kind] + [k for child in module.imports for k in kinds(child)]

    assert "cuda" in kinds(executable.mod)
    assert "cuda" not in kinds(build_artifact(digits_program.mod, parse_target("cpu"), BuildOptions()).mod)
    if tvm.cuda(0).exist:
        pytest.skip("this machine has a GPU: the no-GPU refusal cannot be shown here")
    batch = input_batch(digits_program, load_image_set("digits:2"))
    with pytest.raises(InputError, match="no CUDA GPU"):
        run_variant(digits_program, parse_variant("tvm:cuda"), batch)


@pytest.mark.gpu
def test_cuda_matches_cpu_on_a_gpu(digits_program):
    if not tvm.cuda(0).exist:
        pytest.skip("no CUDA GPU on this machine")
    batch = input_batch(digits_program, load_image_set("digits:16"))
    cpu = run_variant(digits_program, parse_variant("tvm:cpu-generic"), batch).output.logits
    gpu = run_variant(digits_program, parse_variant("tvm:cuda"), batch).output.logits
    assert rel_l2(cpu, gpu) < 1e-4


def test_digits_on_every_cpu_stack_matches_pytorch_and_onnxruntime(digits_program):
    batch = input_batch(digits_program, load_image_set("digits:24"))
    reference = run_variant(digits_program, parse_variant("torch"), batch).output
    assert reference.logits.shape == (24, 10) and (reference.latencies > 0).all()
    for text in ["tvm:cpu:O0", "tvm:cpu-generic:O2", "tvm:cpu-avx2:O1", "tvm:cpu:O3", "onnxruntime"]:
        out = run_variant(digits_program, parse_variant(text), batch).output
        assert rel_l2(reference.logits, out.logits) < 1e-5, text
        assert (out.logits.argmax(1) == reference.logits.argmax(1)).all(), text


@pytest.mark.slow
def test_resnet18_on_tvm_matches_pytorch_eager_within_1e_4():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = load_program("torchvision:resnet18")
    batch = input_batch(program, load_image_set("photos:2"))
    reference = run_variant(program, parse_variant("torch"), batch).output.logits
    for text in ["tvm:cpu", "tvm:cpu-generic"]:
        out = run_variant(program, parse_variant(text), batch).output.logits
        assert out.shape == (2, 1000)
        assert rel_l2(reference, out) < 1e-4, text


def test_onnx_model_on_tvm_matches_onnxruntime(digits_onnx):
    program = load_program(str(digits_onnx))
    batch = input_batch(program, load_image_set("digits:24"))
    reference = run_variant(program, parse_variant("onnxruntime"), batch).output.logits
    for text in ["tvm:cpu:O0", "tvm:cpu-generic:O2"]:
        out = run_variant(program, parse_variant(text), batch).output.logits
        assert rel_l2(reference, out) < 1e-5, text


def test_remote_run_over_rpc_equals_the_local_run(digits_program, rpc_server):
    batch = input_batch(digits_program, load_image_set("digits:12"))
    local = run_variant(digits_program, parse_variant("tvm:cpu-generic"), batch).output.logits
    remote = run_variant(digits_program, parse_variant(f"tvm:rpc://127.0.0.1:{rpc_server}"), batch).output
    np.testing.assert_array_equal(local, remote.logits)
    assert (remote.latencies > 0).all()
