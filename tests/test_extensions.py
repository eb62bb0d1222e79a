"""The extension seams: a metric and a runner added from outside MutateNN, through the
public tables, appear in a real `compare` run, its files and its report."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import campaign_config

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


# ---------------------------------------------------------------- a campaign with extensions

def large_logit_changes(ref_logits, out_logits, truth=None) -> float:
    """Images with some logit moved by more than 0.5: a count term written outside MutateNN."""
    diff = np.abs(np.asarray(out_logits, np.float64) - np.asarray(ref_logits, np.float64))
    return float((np.nan_to_num(diff, nan=np.inf).max(axis=1) > 0.5).sum())


def unanimous(criterion, mutant, original, settings):
    """Killed only when every pass kills: a verdict over passes written outside MutateNN."""
    from mutatenn.campaign.repeats import PassJudgement

    kills = [bool(criterion.is_killed(values)) for values in mutant]
    return PassJudgement(all(kills), sum(kills), len(kills), f"killed in {sum(kills)} of {len(kills)} passes (unanimous)")


@pytest.fixture
def campaign_extensions():
    from mutatenn.campaign.repeats import PASS_VERDICTS, PassVerdict
    from operators.criteria import COUNT_TERMS, CountSpec

    metric = operators.Metric("mean_abs_error", mean_abs_error, operators.LOWER_IS_CLOSER,
                              "mean absolute logit difference", "Mean abs err", "distance", monotone=True)
    operators.CATALOGUE.register(metric)
    COUNT_TERMS["large_changes"] = CountSpec("large_changes", ">=", "images with a logit moved by more than 0.5",
                                             large_logit_changes, lambda t: None if t >= 1 else "needs N >= 1")
    PASS_VERDICTS["unanimous"] = PassVerdict("unanimous", unanimous, 2, "killed when every pass kills")
    try:
        yield
    finally:
        operators.CATALOGUE.unregister("mean_abs_error")
        COUNT_TERMS.pop("large_changes", None)
        PASS_VERDICTS.pop("unanimous", None)


def test_a_metric_count_term_and_pass_verdict_reach_a_campaign_its_files_and_report(campaign_extensions, tmp_path,
                                                                                     capsys):
    config = campaign_config(tmp_path / "ext.toml", images="digits:12",
                             operators={"replace_activation_with_tanh": {"positions": [0, 1]}},
                             stacks=[{"name": "cpu-O2", "target": "cpu"}],
                             criterion="large_changes >= 3 or mean_abs_error > 0.25",
                             run={"repeats": 2, "verdict": "unanimous"})
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--jobs", "1"]) == 0, capsys.readouterr().err
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert {"mean_abs_error", "large_changes"} <= set(verdicts.columns)
    judged = verdicts[verdicts["verdict"].isin(["killed", "survived"])]
    assert len(judged) == 2
    for row in judged.itertuples():
        # The stored values decide the first pass; unanimous kills need it too.
        first_kills = row.large_changes >= 3 or row.mean_abs_error > 0.25
        assert row.verdict == "survived" or first_kills, row
        assert row.passes_killed in (0, 1, 2)
    run = json.loads((out / "run.json").read_text())
    assert "mean_abs_error" in [m["name"] for m in run["metrics"]]
    assert "every pass kills" in json.dumps(run)
    html = (out / "report.html").read_text()
    assert "Mean abs err" in html and "every pass kills" in html
