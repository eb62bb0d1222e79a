"""The one build-option schema: a stack key and a variant option are the same option, read
from the same table line, giving the same build; the pass pipeline is one list shared by
builds, tuning and repro."""
from __future__ import annotations

import pandas as pd
import pytest
from conftest import PassRecorder, campaign_table

from mutatenn.build import OPTIONS, BuildOptions, build_artifact, parse_target
from mutatenn.build.options import stack_keys
from mutatenn.cli import main
from mutatenn.config import parse_config, stack_from_table
from mutatenn.errors import ConfigError, TargetError
from mutatenn.runners import parse_variant

# The same builds written as [[stacks]] tables and as variant options.
SAME_BUILDS = [
    ({"bounds_check": True}, "bounds_check=true"),
    ({"disabled_passes": ["FuseOps"], "tir_options": {"disable_vectorize": True}},
     "disabled_passes=FuseOps, tir_options.disable_vectorize=true"),
    ({"opt_level": 3, "schedule": "none", "required_passes": ["ConvertLayout", "FuseTransposeMatmul"],
      "fast_math": False, "tir_options": {"unroll_max_step": 8}},
     "opt_level=3, schedule=none, required_passes=ConvertLayout+FuseTransposeMatmul, fast_math=false, "
     "tir_options.unroll_max_step=8"),
    ({"via": "torch.onnx", "opt_level": 1}, "via=torch.onnx, opt_level=1"),
]


@pytest.mark.parametrize("table, text", SAME_BUILDS)
def test_stack_keys_and_variant_options_give_the_same_build(table, text):
    stack = stack_from_table({"target": "cpu", **table}, "stacks[0]")
    variant = parse_variant(f"tvm:cpu({text})")
    assert variant.options == stack.options and variant.options.key() == stack.options.key()
    assert variant.via == stack.via
    # The stack written as a variant is the same build again, every option kept.
    again = parse_variant(stack.variant_text)
    assert again.options == stack.options and again.via == stack.via and again.target == stack.target


def test_every_stack_key_is_a_variant_option():
    from mutatenn.runners.tvm_relax import TVMRunner

    by_key = {o.key: o for o in OPTIONS}
    assert {"opt_level", "disabled_passes", "bounds_check", "tir_options", "via"} <= set(stack_keys())
    for key in stack_keys():
        assert by_key[key].takes(TVMRunner), key
    # The level may also be written the short way; both ways are one build.
    assert parse_variant("tvm:cpu:O3").options == parse_variant("tvm:cpu(opt_level=3)").options


@pytest.mark.parametrize("text, phrase", [
    ("tvm:cpu(threads=4)", "unknown option 'threads=4' (known: opt_level, disabled_passes"),
    ("tvm:cpu(bounds_check=yes)", "bounds_check: expected true or false, got 'yes'"),
    ("tvm:cpu(opt_level=high)", "opt_level: expected an integer, got 'high'"),
    ("tvm:cpu(disabled_passes=NoSuchPass)", "unknown pass 'NoSuchPass'"),
    ("tvm:cpu(tir_options.vectorise=true)", "unknown TIR option 'vectorise'"),
    ("tvm:cuda(bounds_check=true)", "bounds checks are for CPU (LLVM) targets only"),
    ("tvm:cpu:O2(opt_level=3)", "give the opt level once"),
    ("torch(schedule=none)", "unknown option 'schedule=none' (known: "),
])
def test_a_bad_variant_option_is_one_line_naming_what_it_takes(text, phrase):
    with pytest.raises(TargetError) as err:
        parse_variant(text)
    assert phrase in str(err.value) and len(str(err.value).splitlines()) == 1, str(err.value)


@pytest.mark.parametrize("table, key, phrase", [
    ({"bounds_check": "yes"}, "stacks[0].bounds_check", "expected true or false"),
    ({"opt_level": "3"}, "stacks[0].opt_level", "expected an integer"),
    ({"schedule": "fastest"}, "stacks[0].schedule", "must be one of none, default, tuned"),
    ({"via": "nope"}, "stacks[0].via", "must be one of"),
    ({"target": "cuda", "bounds_check": True}, "stacks[0].bounds_check", "bounds checks are for CPU"),
    ({"model": "other.onnx"}, "stacks[0].model", "unknown key"),
])
def test_a_bad_stack_key_is_one_line_naming_the_key(table, key, phrase):
    raw = campaign_table(images="digits:4", stacks=[{"target": "cpu", **table}])
    with pytest.raises(ConfigError) as err:
        parse_config(raw)  # the text alone: no GPU asked for
    text = str(err.value)
    assert f"'{key}" in text and phrase in text and len(text.splitlines()) == 1, text


@pytest.mark.slow
def test_builds_tuning_and_repro_run_the_same_passes(digits_program):
    """Builds, tuning's task extraction and repro's lowering all take their passes from
    `build.pipeline_passes`: seen from inside by a pass instrument."""
    from mutatenn.repro import lower_for_build
    from mutatenn.tuning import fuse

    target, options = parse_target("cpu"), BuildOptions(opt_level=2, required_pass=("FoldBatchnormToConv2D",))
    built, repro, tuned = PassRecorder(), PassRecorder(), PassRecorder()
    build_artifact(digits_program.mod, target, options, instruments=[built])
    lower_for_build(digits_program.mod, target, options, instruments=[repro])
    fuse(digits_program.mod, target.tvm_target(), instruments=[tuned])
    table = ["LegalizeOps", "AnnotateTIROpPattern", "FoldConstant", "FuseOps", "FuseTIR"]
    relax_built = [n for n in built.names if n in table + ["FoldBatchnormToConv2D"]]
    assert relax_built == ["FoldBatchnormToConv2D", *table]
    assert [n for n in repro.names if n in relax_built] == relax_built
    # Tuning extracts its tasks from a default build (no opt-in pass): the same passes up to FuseTIR.
    assert [n for n in tuned.names if n in table] == table


@pytest.mark.slow
def test_compare_takes_every_stack_option_as_a_variant_option(tmp_path, capsys):
    out = tmp_path / "cmp"
    variants = "tvm:cpu(bounds_check=true),tvm:cpu(disabled_passes=FuseOps, tir_options.disable_vectorize=true)"
    code = main(["compare", "--model", "digits", "--images", "digits:16", "--variants", variants,
                 "--baseline", "torch", "--out", str(out), "--jobs", "1"])
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out / "comparison.csv").set_index("variant")
    for variant in ("tvm:cpu(bounds_check=true)", "tvm:cpu(disabled_passes=FuseOps, tir_options.disable_vectorize=true)"):
        assert table.loc[variant, "top1_agreement"] == 1.0 and table.loc[variant, "rel_l2"] < 1e-4


def test_the_docs_document_every_option_once():
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "stacks.md").read_text()
    section = page.split("## Build options")[1].split("\n## ")[0]
    for opt in OPTIONS:
        if opt.key:
            assert f"| `{opt.key}` |" in section, f"the docs' build-option table lacks {opt.key}"
