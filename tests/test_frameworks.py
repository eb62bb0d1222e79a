"""Framework variation: TensorFlow/Keras/SavedModel/TFLite sources, every import path
(torch.export, torch.onnx, tflite, tf2onnx), native runners, label-space alignment, bad
inputs named by stage, and a campaign whose stacks take two import paths.

The test process itself never imports TensorFlow (torchvision imported after it
segfaults): models are written by tests/_keras_models.py in a subprocess, and MutateNN's
coordinator loads TensorFlow models in worker processes only, which these tests check.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, campaign_config, run_cli

TF_NOISE = ("oneDNN", "absl::", "XNNPACK", "tf.Erf")


@pytest.fixture(scope="module")
def tf_models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tf-models")
    subprocess.run([sys.executable, str(ROOT / "tests" / "_keras_models.py"), str(folder)], check=True,
                   capture_output=True, timeout=300)
    return folder


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("mutatenn: error:")]


def tensorflow_absent() -> bool:
    return "tensorflow" not in sys.modules and "keras" not in sys.modules


def test_a_keras_model_agrees_on_every_framework_path(tf_models, tmp_path):
    from mutatenn.compare import compare

    variants = "tflite,onnxruntime(via=tf2onnx),tvm:cpu(via=tflite),tvm:cpu:O3(via=tf2onnx)"
    result = compare(str(tf_models / "small.keras"), "digits:24", variants, "keras", tmp_path / "cmp", jobs=2)
    table = result.table.set_index("variant")
    assert not result.errors
    assert (table["top1_agreement"] == 1.0).all()
    assert (table["rel_l2"] < 1e-4).all()
    assert table.loc["keras", "path"] == "Keras"
    assert table.loc["tflite", "path"] == "Keras -> tflite (tflite)"
    assert table.loc["onnxruntime(via=tf2onnx)", "path"] == "Keras -> tf2onnx (onnx)"
    assert table.loc["tvm:cpu:O3(via=tf2onnx)", "path"] == "Keras -> tf2onnx (onnx)"
    meta = json.loads((tmp_path / "cmp" / "run.json").read_text())
    assert meta["framework"] == "Keras" and meta["paths"]["tvm:cpu(via=tflite)"] == "Keras -> tflite (tflite)"
    # The report says which path each variant took.
    assert "Keras -&gt; tf2onnx (onnx)" in (tmp_path / "cmp" / "report.html").read_text()
    assert tensorflow_absent(), "the coordinator imported TensorFlow; it must stay in worker processes"


def test_a_pytorch_model_agrees_through_torch_export_and_torch_onnx(tmp_path, digits_program):
    from mutatenn.compare import compare
    from mutatenn.loading import load_program
    from mutators.base import structural_hash_hex

    variants = "onnxruntime(via=torch.onnx),tvm:cpu,tvm:cpu(via=torch.onnx)"
    result = compare("digits", "digits:40", variants, "torch", tmp_path / "cmp", jobs=2, render=False)
    table = result.table.set_index("variant")
    assert not result.errors
    assert (table["top1_agreement"] == 1.0).all() and (table["rel_l2"] < 1e-4).all()
    assert table.loc["tvm:cpu", "path"] == "PyTorch -> torch.export (exported)"
    assert table.loc["tvm:cpu(via=torch.onnx)", "path"] == "PyTorch -> torch.onnx (onnx)"
    # The two paths give TVM different programs: the path is a real variation, not a label.
    via_onnx = load_program("digits", via="torch.onnx")
    assert via_onnx.via == "torch.onnx" and digits_program.via == "torch.export"
    assert structural_hash_hex(via_onnx.mod) != structural_hash_hex(digits_program.mod)


@pytest.mark.parametrize("name, baseline", [("small.h5", "keras"), ("small_saved", "keras"),
                                            ("small.tflite", "tflite")])
def test_every_tensorflow_format_loads_and_gives_the_same_labels(tf_models, tmp_path, name, baseline):
    from mutatenn.compare import compare

    reference = compare(str(tf_models / "small.keras"), "digits:24", "tvm:cpu", "keras", tmp_path / "ref",
                        render=False)
    result = compare(str(tf_models / name), "digits:24", "tvm:cpu,onnxruntime", baseline, tmp_path / "cmp",
                     jobs=2, render=False)
    assert not result.errors
    assert (result.table["top1_agreement"] == 1.0).all()
    ours = result.per_image[result.per_image["variant"] == baseline]["top1"].tolist()
    theirs = reference.per_image[reference.per_image["variant"] == "keras"]["top1"].tolist()
    assert ours == theirs  # the same network, whatever file it came in


def test_a_background_class_is_aligned_and_said(tf_models, tmp_path):
    from mutatenn.compare import compare

    other = tf_models / "background.tflite"
    variants = f"tflite(model={other}),tvm:cpu(model={other})"
    result = compare(str(tf_models / "small.keras"), "digits:24", variants, "keras", tmp_path / "cmp", render=False)
    assert not result.errors
    assert len(result.notes) == 2 and all("11 classes" in n and "background" in n for n in result.notes)
    assert (result.table["top1_agreement"] == 1.0).all() and (result.table["rel_l2"] < 1e-4).all()
    assert result.table.set_index("variant").loc[f"tflite(model={other})", "path"].startswith("TFLite (background")
    meta = json.loads((tmp_path / "cmp" / "run.json").read_text())
    assert any("dropped to align" in n for n in meta["notes"])


@pytest.mark.parametrize("model, variants, baseline, expected", [
    ("broken.keras", "tvm:cpu", "keras", "load (Keras) failed for"),
    ("nosignature", "tvm:cpu", "keras", "no serving signature"),
    ("erf_saved", "tflite", "keras", "convert (TensorFlow SavedModel -> tflite via tflite) failed for"),
    ("small.keras", "tvm:cpu(via=torch.onnx)", "keras", "import path 'torch.onnx' takes a PyTorch model"),
    ("small.keras", "torch", "keras", "needs a PyTorch model"),
    ("small.keras", "tvm:cpu(via=nope)", "keras", "via must be one of"),
])
def test_bad_tensorflow_inputs_are_one_line_naming_the_stage(tf_models, tmp_path, model, variants, baseline, expected):
    proc = run_cli("compare", "--model", str(tf_models / model), "--images", "digits:8", "--variants", variants,
                   "--baseline", baseline, "--out", str(tmp_path / "cmp"), "--no-report")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = error_lines(proc.stderr)
    assert lines and any(expected in line for line in lines), proc.stderr[-2000:]
    assert all(len(line) < 600 for line in lines)  # one line, not a converter's MLIR dump


def test_a_failing_conversion_leaves_the_other_variants_their_results(tf_models, tmp_path):
    from mutatenn.compare import compare

    result = compare(str(tf_models / "erf_saved"), "digits:16", "tflite,tvm:cpu(via=tf2onnx),onnxruntime",
                     "keras", tmp_path / "cmp", jobs=2, render=False)
    assert set(result.errors) == {"tflite"} and "TFLite has no builtin op for Erf" in result.errors["tflite"]
    assert result.errors["tflite"].endswith("; try via=tf2onnx")  # the other path this model can take
    table = result.table.set_index("variant")
    assert table.loc["tvm:cpu(via=tf2onnx)", "top1_agreement"] == 1.0
    assert table.loc["onnxruntime", "path"] == "TensorFlow SavedModel -> tf2onnx (onnx)"


def test_tflite_quantisation_runs_the_converters_integer_model(tf_models, tmp_path):
    """``tflite(quantize=int8-static)`` is the converter's full-integer model calibrated on
    the run's images: a smaller file whose outputs move off the float ones by quantisation
    error yet keep their labels here. A .tflite file is already converted: that variant's
    row carries the refusal and the others run."""
    from mutatenn.compare import compare

    result = compare(str(tf_models / "small.h5"), "digits:24", "tflite,tflite(quantize=int8-static)", "keras",
                     tmp_path / "cmp", jobs=1, render=False)
    assert not result.errors
    table = result.table.set_index("variant")
    fp32, int8 = table.loc["tflite"], table.loc["tflite(quantize=int8-static)"]
    assert int8["size_bytes"] < fp32["size_bytes"]
    assert int8["max_rel_error"] > 100 * max(fp32["max_rel_error"], 1e-9)  # integer arithmetic, not float
    assert int8["top1_agreement"] >= 0.9

    refused = compare(str(tf_models / "small.tflite"), "digits:16", "tflite,tflite(quantize=int8-static)", "tflite",
                      tmp_path / "cmp2", jobs=1, render=False)
    assert set(refused.errors) == {"tflite(quantize=int8-static)"}
    assert "already a .tflite file" in refused.errors["tflite(quantize=int8-static)"]


def test_keras_applications_use_cached_weights_or_warn(tmp_path):
    import warnings

    from mutatenn.loading import UntrainedWeightsWarning, load_source_isolated

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source, failed = load_source_isolated("keras:MobileNetV2", "never", vias=("tf2onnx",))
    assert source.framework == "keras" and source.input.shape == (1, 224, 224, 3) and source.input.layout == "NHWC"
    assert source.preset == "tf" and len(source.labels) == 1000 and source.labels[0] == "tench"
    assert not failed and source.native is None and source.forms["tf2onnx"].kind == "onnx"
    assert any(issubclass(w.category, UntrainedWeightsWarning) for w in caught)
    assert tensorflow_absent()
    # Seeded weights get batch-norm statistics from seeded noise: with the constructor's the
    # logits were ~1e-10 and every photo one class. The tf2onnx form shows it without TensorFlow.
    import onnxruntime

    from mutatenn.images import load_image_set, preprocess

    assert any(note.startswith("batch-norm statistics") for note in source.notes)
    onnx_model = source.forms["tf2onnx"].payload
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    photos = preprocess(load_image_set("photos:8"), source.preset, source.input.shape, source.input.layout)
    logits = np.concatenate([session.run(None, {session.get_inputs()[0].name: photos[i:i + 1]})[0]
                             for i in range(len(photos))])
    assert np.abs(logits).max() > 0.1 and len(set(logits.argmax(axis=1).tolist())) > 1

    home = tmp_path / "keras-home"
    refused = run_cli("compare", "--model", "keras:MobileNetV2", "--pretrained", "require", "--images", "photos",
                      "--variants", "onnxruntime", "--baseline", "keras", "--out", str(tmp_path / "a"),
                      env={"KERAS_HOME": str(home)})
    assert refused.returncode == 2 and "not in the local cache" in "".join(error_lines(refused.stderr))
    subprocess.run([sys.executable, str(ROOT / "tests" / "_keras_models.py"), "--weights", str(home)], check=True,
                   capture_output=True, timeout=300)
    used = run_cli("compare", "--model", "keras:MobileNetV2", "--pretrained", "require", "--images", "photos",
                   "--variants", "onnxruntime", "--baseline", "keras", "--out", str(tmp_path / "b"), "--no-report",
                   env={"KERAS_HOME": str(home)})
    assert used.returncode == 0, used.stderr[-2000:]
    meta = json.loads((tmp_path / "b" / "run.json").read_text())
    assert any(n.startswith("pretrained weights from") and str(home) in n for n in meta["notes"])
    table = pd.read_csv(tmp_path / "b" / "comparison.csv")
    assert table["top1_agreement"].min() == 1.0


def campaign_keys(model: Path, first_via: str = "tflite") -> dict:
    """A campaign of ``model`` on two import paths (the first stack's may be changed)."""
    return {"model": model, "images": "digits:24", "select": {"sample": 2, "seed": 0},
            "operators": ["replace_activation_with_tanh", "remove_activation", "block_neuron_effect",
                          "tir_store_scale2"],
            "stacks": [{"name": "cpu-via-tflite", "target": "cpu", "via": first_via},
                       {"name": "cpu-via-tf2onnx", "target": "cpu", "via": "tf2onnx"}],
            "run": {"jobs": 2, "timeout": 300}}


def run_campaign_config(folder: Path, model: Path):
    from mutatenn.campaign import run_campaign
    from mutatenn.config import load_config

    path = campaign_config(folder / "campaign.toml", **campaign_keys(model))
    return run_campaign(load_config(path), folder / "run", quiet=True)


def test_a_campaign_with_two_import_paths_scores_each_path_on_its_own_mutants(tf_models, tmp_path):
    result = run_campaign_config(tmp_path, tf_models / "small.keras")
    out = result.out_dir
    meta = json.loads((out / "run.json").read_text())
    assert {s["name"]: s["via"] for s in meta["stacks"]} == {"cpu-via-tflite": "tflite", "cpu-via-tf2onnx": "tf2onnx"}
    mutants = json.loads((out / "mutants.json").read_text())
    by_via = {m["via"] for m in mutants}
    assert by_via == {"tflite", "tf2onnx"}
    assert all(m["id"].startswith(m["via"] + "/") for m in mutants)
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    for stack, via in (("cpu-via-tflite", "tflite"), ("cpu-via-tf2onnx", "tf2onnx")):
        ids = verdicts[verdicts["stack"] == stack]["mutant_id"]
        assert len(ids) and ids.str.startswith(via + "/").all()  # each stack judged its own path's mutants
    scores = result.scores[result.scores["group"] == "all"].set_index("stack")
    assert set(scores.index) == {"cpu-via-tflite", "cpu-via-tf2onnx"}
    assert (scores["killed"] > 0).all()  # tanh for relu and scaled stores change labels on both paths
    assert not meta["failed_stacks"]
    report = (out / "report.html").read_text()
    assert "schedule default, via tflite" in report and "schedule default, via tf2onnx" in report
    assert tensorflow_absent()


def test_a_campaign_goes_on_when_one_import_path_fails(tf_models, tmp_path):
    result = run_campaign_config(tmp_path, tf_models / "erf_saved")
    meta = json.loads((result.out_dir / "run.json").read_text())
    assert list(meta["failed_stacks"]) == ["cpu-via-tflite"]
    assert "TFLite has no builtin op for Erf" in meta["failed_stacks"]["cpu-via-tflite"]
    scores = result.scores[result.scores["group"] == "all"].set_index("stack")
    assert scores.loc["cpu-via-tf2onnx", "killed"] > 0
    assert scores.loc["cpu-via-tflite", "killed"] == 0 and pd.isna(scores.loc["cpu-via-tflite", "score"])
    assert "Stacks left out" in (result.out_dir / "report.html").read_text()


@pytest.mark.parametrize("stack_via, expected", [("nope", "stacks[0].via"), ("torch.onnx", "takes a PyTorch model")])
def test_an_import_path_that_does_not_fit_is_refused_before_work(tf_models, tmp_path, stack_via, expected):
    config = campaign_config(tmp_path / "c.toml", **campaign_keys(tf_models / "small.keras", first_via=stack_via))
    proc = run_cli("run", str(config), "--out", str(tmp_path / "run"), "--quiet")
    assert proc.returncode == 2 and expected in "".join(error_lines(proc.stderr)), proc.stderr[-2000:]
    assert not (tmp_path / "run" / "verdicts.csv").exists()


@pytest.mark.parametrize("name, vias", [("digits-paths.toml", ["torch.export", "torch.onnx"]),
                                        ("keras-paths.toml", ["tflite", "tf2onnx"])])
def test_the_import_path_examples_are_valid_configs(name, vias):
    from mutatenn.config import load_config

    config = load_config(ROOT / "examples" / name)
    assert [config.stack_via(s) for s in config.stacks] == vias
