"""keep_fp32 (bindings of a precision=fp16 TVM build kept in float32) and `mutatenn localize
--precision` (the set that restores a top-1 agreement target), on the digits CNN and on a
planted copy whose second convolution overflows float16 (weights and bias scaled by 1e5,
its batch norm's statistics scaled to match: float32 outputs unchanged, float16 gives inf)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from mutatenn.build.options import OptionError, options_from_table
from mutatenn.errors import InputError, TargetError
from mutatenn.runners import parse_variant

PLANTED_LAYER = "lv6"  # digits' second convolution, as `mutatenn localize` names it


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The digits CNN whose conv2 computes values near 3e5 (float16 holds at most 65504)."""
    import torch

    from mutatenn.models.digits import load_trained

    model = load_trained()
    with torch.no_grad():
        model.conv2.weight.mul_(1e5)
        model.conv2.bias.mul_(1e5)
        model.bn2.running_mean.mul_(1e5)
        model.bn2.running_var.mul_(1e10)
    path = tmp_path_factory.mktemp("planted") / "digits_overflow.pt2"
    torch.export.save(torch.export.export(model.eval(), (torch.zeros(1, 1, 8, 8),)), str(path))
    return path


# ------------------------------------------------------------------ the option (fast)
def test_keep_fp32_reads_from_variants_and_stacks_alike():
    variant = parse_variant("tvm:cpu(precision=fp16, keep_fp32=lv40+lv12+lv12)")
    assert variant.options.keep_fp32 == ("lv12", "lv40")  # numeric order, once each: one build key
    assert "keep_fp32=lv12+lv40" in variant.canonical
    assert parse_variant(variant.canonical).options == variant.options
    fields, _ = options_from_table({"precision": "fp16", "keep_fp32": ["lv40", "lv12"]}, "stacks[0]")
    assert fields["keep_fp32"] == ("lv12", "lv40")
    with pytest.raises(OptionError, match="expected binding names") as err:
        options_from_table({"keep_fp32": [12]}, "stacks[0]")
    assert err.value.subkey == "stacks[0].keep_fp32"


@pytest.mark.parametrize("text, words", [
    ("tvm:cpu(keep_fp32=lv6)", "keep_fp32 keeps layers of a precision=fp16 build"),
    ("tvm:cpu(precision=fp16, keep_fp32=6x)", "is not a binding name"),
    ("onnxruntime(precision=fp16, keep_fp32=lv6)", "unknown option"),
])
def test_bad_keep_fp32_values_are_refused(text, words):
    with pytest.raises((TargetError, InputError), match=words):
        parse_variant(text)


# ------------------------------------------------------------------ the build (real TVM)
def _build_run(mod, x):
    import tvm
    from tvm import relax

    from mutatenn.build import BuildOptions, build_artifact, parse_target

    main = relax.VirtualMachine(build_artifact(mod, parse_target("cpu"), BuildOptions()), tvm.cpu())["main"]
    return np.concatenate([main(tvm.runtime.tensor(x[i : i + 1])).numpy() for i in range(len(x))])


def _kept_calls(mod) -> dict[str, list[str]]:
    """Bindings outside dataflow blocks (what ToMixedPrecision leaves alone) -> their argument dtypes."""
    from tvm import relax

    out = {}
    for block in mod["main"].body.blocks:
        if isinstance(block, relax.DataflowBlock):
            continue
        for b in block.bindings:
            if isinstance(b.value, relax.Call):
                out[b.var.name] = [str(getattr(a.ty, "dtype", "")) for a in b.value.args if hasattr(a, "ty")]
    return out


def test_kept_binding_stays_fp32_in_the_converted_program(digits_program):
    from mutatenn.compression.precision import relax_fp16

    kept = _kept_calls(relax_fp16(digits_program.mod, (PLANTED_LAYER,)))
    assert kept[PLANTED_LAYER] and set(kept[PLANTED_LAYER]) == {"float32"}  # the convolution and its weight
    assert PLANTED_LAYER not in _kept_calls(relax_fp16(digits_program.mod))
    with pytest.raises(InputError, match="no binding named lv999"):
        relax_fp16(digits_program.mod, ("lv999",))


@pytest.mark.slow
def test_keeping_the_overflowing_layer_brings_outputs_back_to_fp32(planted):
    from mutatenn.compression.precision import relax_fp16
    from mutatenn.execute import input_batch
    from mutatenn.images import load_image_set
    from mutatenn.loading import load_program

    program = load_program(str(planted))
    x = input_batch(program, load_image_set("digits:16"))
    fp32 = _build_run(program.mod, x)
    fp16 = _build_run(relax_fp16(program.mod), x)
    kept16 = _build_run(relax_fp16(program.mod, (PLANTED_LAYER,)), x)
    assert (fp32.argmax(1) == fp16.argmax(1)).mean() < 0.9  # the overflow the test plants
    assert (fp32.argmax(1) == kept16.argmax(1)).mean() == 1.0
    assert np.abs(kept16 - fp32).max() < 0.1 * np.abs(fp32).max()


# ------------------------------------------------------------------ localize --precision (fresh processes)
@pytest.mark.slow
def test_localize_precision_finds_the_overflowing_layer_and_compare_reproduces_it(tmp_path, planted):
    out = tmp_path / "loc"
    proc = run_cli("localize", "--model", str(planted), "--images", "digits:32", "--b", "tvm:cpu(precision=fp16)",
                   "--precision", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "precision.json").read_text())
    assert result["agreement_before"] < 0.99 <= result["agreement_after"] and result["restored"]
    assert PLANTED_LAYER in result["keep_fp32"]
    assert result["layers"][0]["layer"] == PLANTED_LAYER and result["layers"][0]["range"] == "overflow"
    variant = next(line.split(": ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("reproduce: "))
    assert variant == result["variant"] and "keep_fp32=" in variant

    cmp = run_cli("compare", "--model", str(planted), "--images", "digits:32", "--baseline", "tvm:cpu",
                  "--variants", f"tvm:cpu(precision=fp16),{variant}", "--out", str(tmp_path / "cmp"), "--no-report")
    assert cmp.returncode == 0, cmp.stderr
    import pandas as pd

    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv").set_index("variant")
    assert table.loc[variant, "top1_agreement"] == pytest.approx(result["agreement_after"])
    assert table.loc["tvm:cpu(precision=fp16)", "top1_agreement"] == pytest.approx(result["agreement_before"])


@pytest.mark.parametrize("args, words", [
    (["--b", "tvm:cpu(precision=fp16)", "--precision", "--target-agreement", "1.5"], "must be in (0, 1]"),
    (["--b", "tvm:cpu(precision=fp16)", "--precision", "--target-agreement", "0"], "must be in (0, 1]"),
    (["--a", "tvm:cpu", "--b", "tvm:cpu(precision=fp16)", "--target-agreement", "0.9"], "goes with --precision"),
    (["--b", "tvm:cpu(precision=fp16)", "--precision", "--repair"], "cannot be combined with --repair"),
])
def test_bad_precision_arguments_give_one_line(tmp_path, capsys, args, words):
    from mutatenn.cli import main

    out = tmp_path / "out"
    assert main(["localize", "--model", "digits", "--images", "digits:4", *args, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mutatenn: error:") and words in lines[0]
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("b, words", [
    ("tvm:cpu", "--precision needs a variant with precision=fp16"),
    ("tvm:cpu(quantize=int8-static)", "--precision searches float16 builds"),
    ("tvm:cpu(precision=fp16, keep_fp32=lv999)", "no binding named lv999"),
])
def test_bad_precision_variants_give_one_line(tmp_path, capsys, b, words):
    from mutatenn.cli import main

    out = tmp_path / "out"
    assert main(["localize", "--model", "digits", "--images", "digits:4", "--b", b, "--precision", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("mutatenn: error:") and words in lines[0], err
    assert not out.exists()


@pytest.mark.slow
def test_compare_refuses_an_unknown_kept_binding_before_building(tmp_path, capsys):
    from mutatenn.cli import main

    out = tmp_path / "cmp"
    assert main(["compare", "--model", "digits", "--images", "digits:4", "--baseline", "tvm:cpu",
                 "--variants", "tvm:cpu(precision=fp16, keep_fp32=lv6+lv999)", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and "keep_fp32: main has no binding named lv999" in lines[0], err
    assert not out.exists()
