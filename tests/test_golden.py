"""Golden outputs: `compare --save-outputs DIR` saves every variant's logits with a manifest,
and `--baseline saved:DIR[:VARIANT]` replays them, in a new process, instead of running it."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import campaign_config, run_cli

from mutatenn.cli import main

COMMON = ["--model", "digits", "--images", "digits:20", "--no-report"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden")
    code = main(["compare", *COMMON, "--variants", "tvm:cpu:O2", "--baseline", "tvm:cpu:O0",
                 "--out", str(folder / "first"), "--save-outputs", str(folder / "saved")])
    assert code == 0
    return folder


def test_save_outputs_writes_logits_and_a_manifest(saved):
    manifest = json.loads((saved / "saved" / "manifest.json").read_text())
    assert manifest["baseline"] == "tvm:cpu:O0" and list(manifest["variants"]) == ["tvm:cpu:O0", "tvm:cpu:O2"]
    assert manifest["model"]["spec"] == "digits" and manifest["model"]["pretrained"] == "auto"
    assert len(manifest["model"]["hash"]) == 64 and len(manifest["images"]["batch_hash"]) == 64
    assert manifest["images"]["names"][:2] == ["digit_0000", "digit_0001"] and manifest["images"]["count"] == 20
    env = manifest["environment"]
    assert env["tvm"].startswith("0.27") and env["llvm"].isdigit() and env["cpu"] and env["mutatenn"]
    for entry in manifest["variants"].values():
        logits = np.load(saved / "saved" / entry["logits"])
        assert logits.shape == (20, 10) and logits.dtype == np.float32
        assert np.load(saved / "saved" / entry["latencies"]).shape == (20,)
    # The saved logits are the ones compared: the O2 file's top-1 labels give the run's accuracy.
    first = pd.read_csv(saved / "first" / "comparison.csv").set_index("variant")
    truth = np.array([int(x) for x in manifest["images"]["labels"]])
    o2 = np.load(saved / "saved" / manifest["variants"]["tvm:cpu:O2"]["logits"])
    assert np.mean(np.argmax(o2, 1) == truth) == pytest.approx(first.loc["tvm:cpu:O2", "accuracy"])


def test_saved_outputs_replayed_in_a_new_process_compare_equal(saved):
    proc = run_cli("compare", *COMMON, "--variants", "tvm:cpu:O0,tvm:cpu:O2", "--baseline",
                   f"saved:{saved / 'saved'}", "--out", str(saved / "replay"))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(saved / "replay" / "comparison.csv").set_index("variant")
    assert list(table.index) == ["saved:tvm:cpu:O0", "tvm:cpu:O0", "tvm:cpu:O2"]
    assert (table["baseline"] == "saved:tvm:cpu:O0").all()
    same = table.loc["tvm:cpu:O0"]
    assert same["top1_agreement"] == 1.0 and same["rel_l2"] == 0.0 and same["max_abs_error"] == 0.0
    first = pd.read_csv(saved / "first" / "comparison.csv").set_index("variant")
    for metric in ("top1_agreement", "rel_l2", "max_abs_error"):
        assert table.loc["tvm:cpu:O2", metric] == first.loc["tvm:cpu:O2", metric]
    assert "saved outputs of tvm:cpu:O0" in table.loc["saved:tvm:cpu:O0", "path"]


@pytest.mark.parametrize("change, phrase", [
    (["--images", "digits:10"], "from another image set (image names differ): digits:20 (20 images"),
    (["--preset", "imagenet"], "from another image set (preprocessed pixels differ)"),
    (["--pretrained", "never"], "from another model: digits (pretrained=auto"),
    ([":tvm:cpu:O3"], "holds no outputs of variant 'tvm:cpu:O3' (it holds: tvm:cpu:O0, tvm:cpu:O2)"),
])
def test_a_saved_folder_of_another_model_or_image_set_is_refused(saved, tmp_path, capsys, change, phrase):
    baseline = f"saved:{saved / 'saved'}"
    args = ["compare", *COMMON, "--variants", "tvm:cpu:O0", "--out", str(tmp_path / "out")]
    if change[0].startswith(":"):
        baseline += change[0]
    else:
        args += change  # argparse: the last --images / --preset wins
    assert main([*args, "--baseline", baseline]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mutatenn: error:") and phrase in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # refused before anything ran or was written


CAMPAIGN = {"operators": {"drop_weight_precision": {"positions": [0, 1]}},
            "stacks": [{"name": "o0", "target": "cpu", "opt_level": 0}], "criterion": "rel_l2 > 1e-6"}


def test_a_campaign_judges_its_mutants_against_saved_outputs(saved, tmp_path):
    """[run] reference: the mutants on an O0 stack are judged against O2's saved outputs."""
    import sqlite3

    import operators

    reference = f"saved:{saved / 'saved'}:tvm:cpu:O2"
    config = campaign_config(tmp_path / "c.toml", **CAMPAIGN, images="digits:20", run={"reference": reference})
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    entry = json.loads((saved / "saved" / "manifest.json").read_text())["variants"]["tvm:cpu:O2"]
    golden = np.load(saved / "saved" / entry["logits"])
    run = tmp_path / "run"
    with sqlite3.connect(run / "results.sqlite") as db:
        rows = db.execute("SELECT mutant_id, artifact, \"values\" FROM verdicts").fetchall()
    assert len(rows) == 2
    for mutant_id, artifact, values in rows:
        with np.load(run / "outputs" / f"{artifact}.npz") as out:
            expected = operators.compare_outputs(golden, out["logits"], None, None)["rel_l2"]
        assert json.loads(values)["rel_l2"] == pytest.approx(expected, rel=1e-9, abs=1e-12), mutant_id
    assert np.array_equal(np.load(run / "outputs" / "reference.npz")["logits"], golden)
    assert json.loads((run / "run.json").read_text())["reference"].endswith(":tvm:cpu:O2")

    # Saved outputs of another image set: one line naming it, exit 2, before anything is built.
    campaign_config(config, **CAMPAIGN, images="digits:12", run={"reference": reference})
    proc = run_cli("run", str(config), "--out", str(tmp_path / "other"), "--quiet")
    assert proc.returncode == 2 and "from another image set" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not list((tmp_path / "other").rglob("*.npz"))
