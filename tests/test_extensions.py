"""The extension seams: a metric and a runner added from outside MutateNN, through the
public tables, appear in a real `compare` run, its files and its report."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import operators
from mutatenn.cli import main
from mutatenn.runners import RUNNERS, register_runner


def mean_abs_error(ref, other) -> float:
    return float(np.mean(np.abs(np.asarray(ref, np.float64) - np.asarray(other, np.float64))))


@pytest.fixture
def extensions():
    metric = operators.Metric("mean_abs_error", mean_abs_error, operators.LOWER_IS_CLOSER,
                              "mean absolute logit difference", "Mean abs err", "distance")
    operators.CATALOGUE.register(metric)
    register_runner("torch64", "_extra_runner:Float64TorchRunner")
    try:
        yield
    finally:
        operators.CATALOGUE.unregister("mean_abs_error")
        RUNNERS.pop("torch64", None)


def test_a_registered_metric_and_runner_reach_compare_and_its_report(extensions, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--model", "digits", "--images", "digits:12", "--variants", "torch64,tvm:cpu",
                 "--baseline", "torch", "--out", str(out), "--jobs", "2"])
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out / "comparison.csv").set_index("variant")
    assert "mean_abs_error" in table.columns
    # float64 PyTorch agrees with float32 PyTorch on every label, differing only in rounding.
    assert table.loc["torch64", "top1_agreement"] == 1.0
    assert 0 < table.loc["torch64", "mean_abs_error"] < 1e-4
    assert table.loc["torch64", "error"] != table.loc["torch64", "error"]  # NaN: no error
    pairwise = pd.read_csv(out / "pairwise.csv")
    assert {"torch64", "tvm:cpu", "torch"} <= set(pairwise["variant_a"])
    assert "mean_abs_error" in pairwise.columns
    run = json.loads((out / "run.json").read_text())
    assert run["metrics"][-1]["name"] == "mean_abs_error" and "torch64" in run["variants"]
    html = (out / "report.html").read_text()
    assert "Mean abs err" in html and "mean absolute logit difference" in html and "torch64" in html


def test_an_unknown_runner_is_one_line_naming_the_known_ones(capsys, tmp_path):
    code = main(["compare", "--model", "digits", "--images", "digits:2", "--variants", "torch64",
                 "--baseline", "torch", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "unknown variant 'torch64'" in err
    assert "tvm:TARGET[:O<level>]" in err and "onnxruntime" in err
