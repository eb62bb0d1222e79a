"""`localize --passes`: the pipeline steps between two builds of one program, and the
bisection to the one whose addition first makes B diverge from A, on a planted
divergence (a tanh head: FastMathTransform approximates tanh; O0 against O3)."""
from __future__ import annotations

import json

import pytest
from conftest import run_cli

from mutatenn.build.options import BuildOptions
from mutatenn.cli import main
from mutatenn.localize.passes import options_after, pipeline_steps


@pytest.fixture(scope="module")
def tanh_model(tmp_path_factory):
    """The bundled digits CNN with a tanh on its logits, saved as a torch.export program."""
    import torch

    from mutatenn.models.digits import load_trained

    path = tmp_path_factory.mktemp("tanh") / "tanh_digits.pt2"
    model = torch.nn.Sequential(load_trained(), torch.nn.Tanh()).eval()
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 8, 8),)), str(path))
    return path


def test_steps_between_two_pipelines_in_pipeline_order():
    a, b = BuildOptions(opt_level=0, schedule="none"), BuildOptions(opt_level=3, tir_options={"disable_vectorize": True})
    steps = pipeline_steps(a, b)
    assert [s.text for s in steps] == ["+FastMathTransform", "+FoldConstant", "+FuseOps", "+FuseTIR",
                                       "tir disable_vectorize=True", "schedule=default"]
    assert options_after(a, steps).key() == b.key()
    assert set(options_after(a, steps[:2]).passes()) == {"FoldConstant", "FastMathTransform"}
    back = pipeline_steps(b, a)
    assert [s.text for s in back][:4] == ["-FastMathTransform", "-FoldConstant", "-FuseOps", "-FuseTIR"]
    assert options_after(b, back).key() == a.key()
    assert pipeline_steps(BuildOptions(opt_level=2), BuildOptions(opt_level=2, fast_math=False)) == []


@pytest.mark.slow
def test_o0_against_o3_blames_fast_math_and_the_tanh(tanh_model, tmp_path, capsys):
    out = tmp_path / "loc"
    assert main(["localize", "--model", str(tanh_model), "--preset", "raw", "--a", "tvm:cpu:O0", "--b", "tvm:cpu:O3",
                 "--images", "digits:6", "--passes", "--tolerance", "1e-9", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "guilty: +FastMathTransform (step 1 of 4" in text
    summary = json.loads((out / "divergence.json").read_text())
    passes = summary["passes"]
    assert passes["guilty"] == "+FastMathTransform" and passes["before"] == "O0"
    assert passes["after"] == "O0,+FastMathTransform"
    assert len(passes["builds"]) <= 3  # one build per bisection step: log2(4) + the full B
    assert all(b["diverges"] for b in passes["builds"] if "+FastMathTransform" in b["options"])
    assert summary["first_divergence"]["kind_a"] == "tanh"


@pytest.mark.slow
def test_a_campaign_pass_mutant(tanh_model, tmp_path, capsys):
    config = tmp_path / "campaign.toml"
    config.write_text(f"""
[model]
spec = "{tanh_model}"
preset = "raw"
[images]
spec = "digits:6"
[mutants.operators]
pass_fast_math = {{ positions = [0] }}
[[stacks]]
name = "cpu-O2"
target = "cpu"
opt_level = 2
[kill]
criterion = "rel_l2 > 1e-9"
""")
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    out = tmp_path / "loc"
    assert main(["localize", str(tmp_path / "run"), "--mutant", "pass_fast_math#0", "--passes", "--tolerance",
                 "1e-9", "--out", str(out)]) == 0
    assert "guilty: +FastMathTransform (step 1 of 1" in capsys.readouterr().out
    assert json.loads((out / "divergence.json").read_text())["first_divergence"]["kind_a"] == "tanh"


@pytest.mark.slow  # three fresh processes (the worker's one-line error as a user sees it)
@pytest.mark.parametrize("a, b, words", [
    ("tvm:cpu:O2", "tvm:cpu:O2(fast_math=false)", "do not differ by pipeline"),
    ("torch", "tvm:cpu:O2", "must both be TVM variants"),
    ("tvm:cpu:O2", "tvm:cpu-generic:O3", "needs one target"),
])
def test_variants_that_do_not_differ_by_pipeline_are_refused(tmp_path, a, b, words):
    out = tmp_path / "loc"
    done = run_cli("localize", "--model", "digits", "--a", a, "--b", b, "--images", "digits:4", "--passes",
                   "--out", str(out))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and words in done.stderr
    assert not out.exists()


def test_a_graph_mutant_is_not_a_pipeline_difference(digits_campaign, tmp_path, capsys):
    out = tmp_path / "loc"
    assert main(["localize", str(digits_campaign), "--mutant", "replace_activation_with_tanh#0", "--passes",
                 "--out", str(out)]) == 2
    assert "differ in their program" in capsys.readouterr().err
    assert not out.exists()
