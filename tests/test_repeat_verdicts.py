"""Repeat-robust kills: passes in the worker or in fresh processes, and a verdict over the
passes (first, majority, statistical) on planted non-deterministic faults, with a
non-deterministic original reported before any mutant is judged."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from conftest import campaign_config, campaign_table, run_cli
from scipy.stats import mannwhitneyu

import operators
from mutatenn.campaign.repeats import PassSettings, judge_passes
from mutatenn.config import parse_config
from mutatenn.errors import ConfigError

OP = "drop_weight_precision"


def run_campaign(tmp_path, run: dict, faults: dict):
    """Three mutants of `OP` on 8 digits, killed by one flip, with ``run``'s [run] keys."""
    config = campaign_config(tmp_path / "campaign.toml", operators={OP: {"positions": [0, 1, 2]}},
                             criterion="flipped >= 1", run={"timeout": 300, "jobs": 2, **run})
    out = tmp_path / "run"
    result = run_cli("run", str(config), "--out", str(out), "--quiet", "--no-report",
                     env={"MUTATENN_TEST_FAULTS": json.dumps({"flip_passes": faults})})
    assert result.returncode == 0, result.stderr
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False).set_index("mutant_id")
    return out, verdicts, result


def test_majority_over_passes_in_fresh_processes(tmp_path):
    # The fault negates image 0's logits (its top-1 flips) in the listed passes (0 = the first).
    faults = {f"{OP}#0": [1, 2], f"{OP}#1": [0]}
    out, verdicts, _ = run_campaign(tmp_path, {"repeats": 3, "repeat_in": "process", "verdict": "majority"},
                                    faults)
    # Killed in passes 2 and 3 but not the first: a first-pass verdict would miss it.
    assert verdicts.loc[f"{OP}#0", "verdict"] == "killed"
    assert verdicts.loc[f"{OP}#0", "passes_killed"] == 2
    assert "killed in 2 of 3 passes (majority)" in verdicts.loc[f"{OP}#0", "reason"]
    # Killed in the first pass only: a first-pass verdict would call it killed.
    assert verdicts.loc[f"{OP}#1", "verdict"] == "survived"
    assert verdicts.loc[f"{OP}#1", "passes_killed"] == 1
    assert verdicts.loc[f"{OP}#1", "unstable"] == 1
    # Passes 2..3 ran in processes of their own, none the worker that built the mutant.
    log = (out / "logs").glob("*.log")
    for text in (p.read_text() for p in log):
        worker = re.findall(r"pass 1: worker process (\d+)", text)
        fresh = re.findall(r"pass \d: fresh process (\d+)", text)
        assert len(worker) == 1 and len(fresh) == 2
        assert len(set(fresh)) == 2 and worker[0] not in fresh
    run = json.loads((out / "run.json").read_text())
    assert run["repeat_in"] == "process" and run["pass_verdict"]["method"] == "majority"


def test_statistical_verdict_counts_a_non_deterministic_original_as_noise(tmp_path):
    faults = {f"{OP}#0": [0, 1, 2, 3, 4],  # flips in every pass: a real kill
              f"{OP}#1": [0],  # one flip in five: chance
              f"{OP}#2": [1, 2, 3],  # a majority, yet within reach of the original's own noise
              "original": [2]}  # the original flips image 0 in its third pass
    out, verdicts, result = run_campaign(tmp_path, {"repeats": 5, "verdict": "statistical"}, faults)
    assert "the original program is non-deterministic" in result.stderr
    assert json.loads((out / "run.json").read_text())["unstable_originals"] == ["cpu"]
    assert verdicts.loc[f"{OP}#0", "verdict"] == "killed"
    assert re.search(r"p = 0\.0\d+, A12 = 0\.88", verdicts.loc[f"{OP}#0", "reason"])
    assert verdicts.loc[f"{OP}#1", "verdict"] == "survived"  # its median pass flips nothing
    assert verdicts.loc[f"{OP}#2", "verdict"] == "survived"
    assert verdicts.loc[f"{OP}#2", "passes_killed"] == 3
    assert "A12 = 0.68" in verdicts.loc[f"{OP}#2", "reason"]  # below the 0.71 of a large effect
    # The report says how each verdict was reached.
    from reports import render_report

    html = render_report(out).read_text()
    assert "killed in 3 of 5 passes" in html and "Mann-Whitney U p &lt; 0.05" in html


def test_statistical_terms_follow_the_criterion_and_scipy():
    criterion = operators.parse_criterion("rel_l2 > 0.1 and top1_agreement < 1")
    noise = [{"rel_l2": 0.0, "top1_agreement": 1.0}] * 4
    far = [{"rel_l2": 0.5 + i / 10, "top1_agreement": 0.5} for i in range(5)]
    verdict = judge_passes(criterion, far, noise, PassSettings("statistical"))
    assert verdict.killed and verdict.passes_killed == 5
    p = mannwhitneyu([v["rel_l2"] for v in far], [0.0] * 4, alternative="greater").pvalue
    assert f"p = {p:.3g}, A12 = 1.00" in verdict.note
    # The `and` needs both terms: agreement unchanged in every pass keeps it alive.
    same_labels = [{**v, "top1_agreement": 1.0} for v in far]
    assert not judge_passes(criterion, same_labels, noise, PassSettings("statistical")).killed
    # An original that moves as much as the mutant: nothing significant.
    assert not judge_passes(criterion, far, far[:4], PassSettings("statistical")).killed


@pytest.mark.parametrize("run, message", [
    ({"repeats": 5, "verdict": "vote"}, "run.verdict': must be one of first, majority, statistical"),
    ({"repeats": 2, "verdict": "majority"}, "needs run.repeats >= 3"),
    ({"repeats": 3, "verdict": "statistical"}, "needs run.repeats >= 4"),
    ({"repeats": 3, "repeat_in": "thread"}, "run.repeat_in': must be one of worker, process"),
    ({"repeat_in": "process"}, "needs run.repeats >= 2"),
    ({"repeats": 3, "verdict": "majority", "fast_kill": True}, "does not go with run.fast_kill"),
    ({"repeats": 3, "verdict": "majority", "significance": 0.01}, "are for run.verdict = \"statistical\""),
    ({"repeats": 5, "verdict": "statistical", "effect_size": 0.3}, "run.effect_size': must be at least 0.5"),
])
def test_bad_repeat_settings_are_one_line(run, message):
    raw = campaign_table(images="digits:4", operators={OP: "first"}, run=run)
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(raw)


def latency_config(path, **run):
    """Two mutants of `OP` on 4 digits, killed on latency, with ``run``'s [run] keys."""
    return campaign_config(path, images="digits:4", operators={OP: {"positions": [0, 1]}},
                           criterion="latency_ratio > 10", run={"timeout": 300, **run})


def test_a_latency_kill_needs_pinned_threads_and_repeated_timing(tmp_path, capsys):
    from mutatenn.cli import main

    config = latency_config(tmp_path / "latency.toml")
    assert main(["run", str(config), "--out", str(tmp_path / "refused"), "--quiet"]) == 2
    assert "needs [run] timing" in capsys.readouterr().err
    latency_config(config, timing={"calls": 5, "threads": 1})
    assert main(["run", str(config), "--out", str(tmp_path / "two"), "--quiet", "--jobs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(--jobs 1)" in err[0], err
    # A build planted to sleep 50 ms per call is killed on latency; its sibling is not.
    proc = run_cli("run", str(config), "--out", str(tmp_path / "run"), "--quiet", "--no-report",
                   env={"MUTATENN_TEST_FAULTS": json.dumps({"slow": [f"{OP}#0"]})})
    assert proc.returncode == 0, proc.stderr
    verdicts = pd.read_csv(tmp_path / "run" / "verdicts.csv", keep_default_na=False).set_index("mutant_id")
    assert verdicts.loc[f"{OP}#0", "verdict"] == "killed" and verdicts.loc[f"{OP}#0", "latency_ratio"] > 10
    assert verdicts.loc[f"{OP}#1", "verdict"] == "survived"
    logs = [p.read_text() for p in (tmp_path / "run" / "logs").glob("*.log")]
    assert len(logs) == 3 and all("1 thread(s) pinned to core(s) [" in t and "median of 5 calls" in t for t in logs)
