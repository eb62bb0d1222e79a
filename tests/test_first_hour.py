"""What a new user meets first: a Keras model of their own on the default path, the
preprocessing said out loud, reports that say why a variant failed (no ``nan``, no
``pending`` on a judged mutant, names never clipped), and bad input (variant syntax,
non-image files, a corrupt image, a config with several errors, a run that fails before
its first job) answered with clear lines and an output folder left as it was found.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, Page, needs_chromium, run_cli
from PIL import Image

NAN = re.compile(r"\bnan\b", re.IGNORECASE)
KERAS_ARCHITECTURES = ("flatten", "gap_bn_dropout", "residual", "depthwise")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("mutatenn: error:")]


# ---------------------------------------------------------------- Keras on every path

@pytest.fixture(scope="module")
def keras_architectures(tmp_path_factory) -> Path:
    """Small Keras models a user writes (tests/_keras_models.py), built in one subprocess:
    this test process never imports TensorFlow."""
    folder = tmp_path_factory.mktemp("keras-architectures")
    subprocess.run([sys.executable, str(ROOT / "tests" / "_keras_models.py"), "--architectures", str(folder)],
                   check=True, capture_output=True, timeout=300)
    return folder


@pytest.mark.slow
def test_small_keras_architectures_agree_on_every_path_with_no_via(keras_architectures):
    """The default path (tflite) imports a Sequential CNN with Flatten: its RESHAPE shape is a
    constant once the model is converted at its fixed batch-1 input. Every architecture runs
    on every path in one subprocess (tests/_keras_paths.py), compared with Keras itself."""
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "_keras_paths.py"), str(keras_architectures),
                           *KERAS_ARCHITECTURES], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert set(results) == set(KERAS_ARCHITECTURES)
    for name, variants in results.items():
        assert set(variants) == {"tvm:cpu", "tvm:cpu(via=tf2onnx)", "tflite", "onnxruntime(via=tf2onnx)"}, name
        for variant, outcome in variants.items():
            assert "error" not in outcome, (name, variant, outcome)
            assert outcome["top1_agreement"] == 1.0 and outcome["rel_l2"] < 1e-4, (name, variant, outcome)


@pytest.mark.slow
def test_a_flatten_keras_model_compares_with_no_via_and_says_its_preprocessing(keras_architectures, tmp_path):
    import pandas as pd

    proc = run_cli("compare", "--model", str(keras_architectures / "flatten.keras"), "--images", "digits:6",
                   "--variants", "tvm:cpu", "--baseline", "keras", "--out", str(tmp_path / "cmp"), "--no-report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv").set_index("variant")
    assert table.loc["tvm:cpu", "top1_agreement"] == 1.0 and table.loc["tvm:cpu", "path"] == "Keras -> tflite (tflite)"
    # An 8x8x1 input does not fit imagenet's preprocessing: raw was chosen, and said first.
    meta = json.loads((tmp_path / "cmp" / "run.json").read_text())
    assert meta["preset"] == "raw" and "chosen, not imagenet" in meta["preprocessing"]
    assert proc.stderr.startswith("preprocessing: raw (resize to the input size, /255) to 8x8x1 (chosen, not "
                                  "imagenet"), proc.stderr[-2000:]
    # TensorFlow's start-up banners stay off the terminal, in the workers too.
    assert not any(noise in proc.stderr for noise in ("oneDNN", "absl::", "cpu_feature_guard", "XNNPACK")), \
        proc.stderr[-2000:]


@pytest.mark.slow
def test_mutants_of_a_flatten_keras_model_need_no_via(keras_architectures):
    proc = run_cli("mutants", "--model", str(keras_architectures / "flatten.keras"), "--level", "graph")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"^\d+ mutants of ", proc.stdout, re.MULTILINE) and not proc.stdout.startswith("0 mutants")
    assert proc.stderr.startswith("preprocessing: raw"), proc.stderr[-2000:]
    assert not any(noise in proc.stderr for noise in ("oneDNN", "absl::", "cpu_feature_guard"))


def test_a_failing_import_path_names_the_others():
    from mutatenn.frameworks import other_paths_hint

    assert other_paths_hint("keras", "tflite") == "; try via=tf2onnx"
    assert other_paths_hint("torch", "torch.export") == "; try via=torch.onnx"
    assert other_paths_hint("onnx", "onnx") == ""


def test_a_preset_that_does_not_fit_the_input_is_replaced_and_said(digits_onnx):
    from mutatenn.loading import load_source, preprocessing_text

    source = load_source(str(digits_onnx))  # an ONNX file carries no preprocessing: imagenet by default
    assert source.preset == "raw" and "imagenet is for 3-channel photos" in source.preset_note
    assert preprocessing_text(source).startswith("raw (resize to the input size, /255) to 8x8x1 (chosen")
    named = load_source(str(digits_onnx), preset="imagenet")  # the user's choice is kept
    assert named.preset == "imagenet" and not named.preset_note


# ---------------------------------------------------------------- reports

def _onnx_that_fails_at_run_time(path: Path) -> Path:
    """An 8x8x1 ONNX model that ONNX Runtime loads and then refuses to run (a bad Reshape)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([1, 10], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Reshape", ["f", "shape"], ["y"])], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _page_words(page) -> str:
    return page.page.evaluate("document.body.innerText")


@needs_chromium
def test_a_failed_variant_shows_its_reason_and_no_value_reads_nan(browser, tmp_path):
    from mutatenn.compare import compare

    bad = _onnx_that_fails_at_run_time(tmp_path / "bad.onnx")
    variant = f"onnxruntime(model={bad})"
    result = compare("digits", "digits:6", f"tvm:cpu,{variant}", "torch", tmp_path / "cmp", jobs=2)
    assert set(result.errors) == {variant} and "Reshape" in result.errors[variant]
    page = Page(browser, tmp_path / "cmp" / "report.html")
    row = page.page.locator("#comparison-table tr.failed-variant")
    assert row.count() == 1 and row.locator("td").first.inner_text() == variant
    reason = row.locator("td.reason")
    assert "failed:" in reason.inner_text() and "Reshape" in reason.inner_text() and reason.is_visible()
    assert "Reshape" in page.page.locator(f".failed-variants li[data-variant='{variant}']").inner_text()
    assert page.page.locator("#overview dd", has_text="raw (resize to the input size").count() == 1
    text = _page_words(page)
    assert not NAN.search(text), NAN.search(text)
    page.check_clean()


@pytest.fixture(scope="module")
def campaign_report(digits_campaign, tmp_path_factory) -> Path:
    """The shared digits campaign's folder, copied (the fixture is read-only) and rendered."""
    from mutatenn.campaign import render_run_report

    folder = tmp_path_factory.mktemp("first-hour") / "run"
    shutil.copytree(digits_campaign, folder)
    report, error = render_run_report(folder)
    assert report is not None, error
    return folder


@needs_chromium
def test_the_campaign_report_names_fates_in_full(browser, campaign_report):
    page = Page(browser, campaign_report / "report.html")
    page.page.set_viewport_size({"width": 1400, "height": 900})
    text = _page_words(page)
    assert not NAN.search(text), NAN.search(text)
    assert page.page.locator("#overview dd", has_text="raw (resize to the input size").count() == 1
    # A judged mutant's detail gives its verdict, not mutants.json's enumeration status.
    for mutant, verdict in (("replace_activation_with_tanh#0", "killed"), ("replace_activation_with_tanh#1", "survived")):
        detail = page.page.locator(f"details.mutant:has(summary .id:text-is('{mutant}'))")
        detail.evaluate("e => e.open = true")
        status = detail.locator("dl.overview div:has(dt:text-is('Status')) dd").inner_text()
        assert status == f"judged: {verdict}" and "pending" not in status
    # pass_opt_level's one mutant is equivalent: its cell says so, not "—".
    cell = page.page.locator("g.heat-cell[data-row='pass_opt_level'][data-col='cpu-O2'] text")
    assert cell.text_content() == "all equivalent"
    # Operator names are whole and inside the chart (nothing runs past its left edge).
    boxes = page.page.evaluate("""() => Array.from(document.querySelectorAll('#operators svg.heatmap > text'))
        .filter(t => t.getAttribute('text-anchor') === 'end')
        .map(t => ({text: t.lastChild.textContent, x: t.getBBox().x, right: t.getBBox().x + t.getBBox().width,
                    cell: t.ownerSVGElement.querySelector('g.heat-cell rect').x.baseVal.value}))""")
    assert {"pass_opt_level", "remove_activation", "replace_activation_with_tanh"} <= {b["text"] for b in boxes}
    assert all(b["x"] >= 0 and b["right"] <= b["cell"] for b in boxes), boxes
    # The stack table fits at 1400 px, or scrolls in its box with the header and the stack names in view.
    fits = page.page.evaluate("""() => { const box = document.querySelector('table.verdict-counts').parentElement;
        return box.scrollWidth <= box.clientWidth; }""")
    sticky = page.page.evaluate("""() => ['thead th', 'tbody td:first-child'].map(s =>
        getComputedStyle(document.querySelector('table.verdict-counts ' + s)).position)""")
    assert fits or sticky == ["sticky", "sticky"]
    assert sticky == ["sticky", "sticky"]
    page.check_clean()


def test_a_long_operator_name_is_never_cut_on_the_heat_map():
    from reports import charts

    name = "replace_activation_with_hard_sigmoid_and_scale_the_weights"  # past the old 34-character cut
    chart = charts.heatmap([name, "x"], ["cpu-O2"], lambda r, c: (None, "all equivalent", ""))
    assert chart["rows"][0]["short"] == name
    assert chart["label_w"] >= len(name) * 7.4
    assert chart["cells"][0]["w"] >= len("all equivalent") * charts.CHAR_W


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("variant, phrase", [
    ("tvm:cpu:3", "the opt level is written O3 (tvm:cpu:O3)"),
    ("tvm:cpux", "unknown target 'cpux'"),
])
def test_variant_syntax_errors_name_the_syntax(tmp_path, capsys, variant, phrase):
    from mutatenn.cli import main

    assert main(["compare", "--model", "digits", "--images", "digits:4", "--variants", variant,
                 "--baseline", "torch", "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and phrase in err and "tvm:TARGET[:O<level>][(options)]" in err, err
    assert "unknown target 'cpu:3'" not in err
    assert not (tmp_path / "cmp").exists()


def _digit_folder(folder: Path, count: int = 3) -> Path:
    folder.mkdir()
    for i in range(count):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"d{i}.png")
    return folder


def test_files_that_are_not_images_are_skipped_and_counted_once(tmp_path, capsys):
    from mutatenn.cli import main
    from mutatenn.images import load_image_set

    folder = _digit_folder(tmp_path / "imgs")
    (folder / "README.txt").write_text("my digits")
    (folder / "labels.csv").write_text("d0,0\n")
    images = load_image_set(str(folder))
    assert images.names == ["d0.png", "d1.png", "d2.png"] and images.skipped == ["README.txt", "labels.csv"]
    assert main(["compare", "--model", "digits", "--images", str(folder), "--variants", "tvm:cpu",
                 "--baseline", "torch", "--out", str(tmp_path / "cmp"), "--no-report"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "not jpg or png" in line]
    assert warnings == [f"warning: 2 files in {str(folder)!r} not jpg or png, skipped: README.txt, labels.csv"], err


def test_a_corrupt_image_stops_the_run_naming_the_file(tmp_path, capsys):
    from mutatenn.cli import main

    folder = _digit_folder(tmp_path / "imgs")
    (folder / "d9.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["compare", "--model", "digits", "--images", str(folder), "--variants", "tvm:cpu",
                 "--baseline", "torch", "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mutatenn: error: cannot read image") and "d9.jpg" in err and len(err.splitlines()) == 1


BAD_CONFIG = """
[model]
spec = "digits"
[images]
spec = "digits:4"
[mutants]
operators = ["no_such_operator"]
[[stacks]]
name = "a"
target = "cpu:3"
[[stacks]]
name = "b"
target = "cpu"
opt_level = 7
[kill]
criterion = "top1_agreement < 1.0"
"""


def test_a_config_with_several_errors_lists_them_all(tmp_path, capsys):
    from mutatenn.cli import main

    config = tmp_path / "c.toml"
    config.write_text(BAD_CONFIG)
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("mutatenn: error: config key '") for line in lines), lines
    assert ["'mutants.operators'" in lines[0], "'stacks[0].target'" in lines[1], "'stacks[1].opt_level'" in lines[2]] \
        == [True, True, True], lines
    assert not (tmp_path / "run").exists()


EARLY_FAILURE = """
[model]
spec = "{model}"
[images]
spec = "digits:4"
[mutants.operators]
remove_activation = {{ positions = [0] }}
[[stacks]]
name = "cpu-O2"
target = "cpu"
"""


@pytest.mark.parametrize("existing", [False, True])
def test_a_run_that_fails_before_its_first_job_leaves_the_folder_as_found(tmp_path, capsys, existing):
    """A model file that fails to load is found after the run folder is opened; the folder
    must not keep a results.sqlite that would refuse the corrected rerun."""
    from mutatenn.cli import main

    (tmp_path / "m.onnx").write_bytes(b"not an onnx model")
    config = tmp_path / "c.toml"
    config.write_text(EARLY_FAILURE.format(model="m.onnx"))
    out = tmp_path / "run"
    if existing:
        out.mkdir()
    assert main(["run", str(config), "--out", str(out), "--quiet", "--no-report"]) == 2
    assert "load (ONNX) failed" in capsys.readouterr().err
    assert (out.is_dir() and not any(out.iterdir())) if existing else not out.exists()
