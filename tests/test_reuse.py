"""Incremental runs (`--reuse OLD_RUN`): what is reused, that a reused run judges as a fresh
one does, and that a changed input reuses nothing."""
from __future__ import annotations

import json
import shutil
import sqlite3

import pandas as pd
import pytest
from conftest import DIGITS_CAMPAIGN, campaign_config, campaign_table

from mutatenn import api
from mutatenn.cli import main

VALUES = ["top1_agreement", "topk_overlap", "kendall_tau", "rbo", "max_abs_error", "rel_l2", "cosine"]


def _config(**changes) -> dict:
    raw = campaign_table(**DIGITS_CAMPAIGN)
    for dotted, value in changes.items():
        table, key = dotted.split(".")
        raw.setdefault(table, {})[key] = value
    return raw


def _builds_run(folder) -> int:
    """Builds this run ran itself (the store rows it did not copy)."""
    meta = json.loads((folder / "run.json").read_text())
    return meta["builds"] - ((meta.get("reuse") or {}).get("builds_reused") or 0)


def test_a_changed_criterion_reuses_the_builds_but_judges_again(digits_campaign, tmp_path):
    """No verdict is copied: the survivor of the old criterion is killed under the new one,
    from the same outputs (same metric values), and nothing is built."""
    run = api.run_campaign(_config(**{"kill.criterion": "cosine < 0.999"}), out=tmp_path / "new",
                           reuse=digits_campaign, report=False)
    reuse = run.meta["reuse"]
    assert reuse["builds_reused"] == reuse["builds_planned"] == run.meta["builds"] and reuse["reason"] == ""
    old = pd.read_csv(digits_campaign / "verdicts.csv").set_index("mutant_id")
    new = run.verdicts.set_index("mutant_id")
    assert old.loc["replace_activation_with_tanh#1", "verdict"] == "survived"
    assert new.loc["replace_activation_with_tanh#1", "verdict"] == "killed"
    judged = old.index[old.verdict.isin(["killed", "survived"])]
    pd.testing.assert_frame_equal(new.loc[judged, VALUES].astype(float), old.loc[judged, VALUES].astype(float))
    assert all((new.loc[judged, "cosine"] < 0.999) == (new.loc[judged, "verdict"] == "killed"))


def test_an_added_stack_builds_only_its_pairs_and_judges_as_a_fresh_run(digits_campaign, tmp_path):
    raw = _config()
    raw["stacks"].append({"name": "cpu-O0", "target": "cpu", "opt_level": 0})
    reused = api.run_campaign(raw, out=tmp_path / "reused", reuse=digits_campaign)
    old_builds = json.loads((digits_campaign / "run.json").read_text())["builds"]
    assert reused.meta["reuse"]["builds_reused"] == old_builds
    assert reused.meta["reuse"]["from"] == str(digits_campaign.resolve())
    builds = pd.read_csv(tmp_path / "reused" / "builds.csv")
    assert _builds_run(tmp_path / "reused") == (builds["stack"] == "cpu-O0").sum()
    fresh = pd.read_csv(digits_campaign / "verdicts.csv")
    mine = reused.verdicts[reused.verdicts["stack"] == "cpu-O2"].reset_index(drop=True)
    assert list(mine.verdict) == list(fresh.verdict) and list(mine.mutant_id) == list(fresh.mutant_id)
    pd.testing.assert_frame_equal(mine[VALUES].astype(float), fresh[VALUES].astype(float))
    assert f"{old_builds} of {reused.meta['builds']} builds reused from" in reused.report.read_text()


def _older_copy(run_dir, tmp_path, change):
    folder = tmp_path / "old"
    shutil.copytree(run_dir, folder)
    with sqlite3.connect(folder / "results.sqlite") as db:
        change(db)
    return folder


def _forget_inputs(db):
    db.execute("DELETE FROM meta WHERE key = 'reuse_inputs'")


def _other_model(db):
    inputs = json.loads(db.execute("SELECT value FROM meta WHERE key = 'reuse_inputs'").fetchone()[0])
    inputs.update(model="0" * 64, model_spec="other.onnx")
    db.execute("UPDATE meta SET value = ? WHERE key = 'reuse_inputs'", (json.dumps(inputs),))


@pytest.mark.parametrize("case, phrase", [
    ("not-a-run", "is not a campaign run folder"),
    ("older", "written by an older MutateNN"),
    ("other-model", "is a campaign of another model ('other.onnx'"),
])
def test_a_folder_that_cannot_be_reused_is_one_line_and_exit_2(digits_campaign, tmp_path, capsys, case, phrase):
    if case == "not-a-run":
        old = tmp_path / "empty"
        old.mkdir()
    else:
        old = _older_copy(digits_campaign, tmp_path, _forget_inputs if case == "older" else _other_model)
    config = campaign_config(tmp_path / "campaign.toml", **DIGITS_CAMPAIGN)
    capsys.readouterr()
    assert main(["run", str(config), "--out", str(tmp_path / "new"), "--reuse", str(old), "--quiet",
                 "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and phrase in err and "nothing can be reused" in err
    assert not (tmp_path / "new" / "verdicts.csv").exists()


def test_a_changed_image_set_reuses_nothing_and_reuse_or_fresh_runs_fresh(digits_campaign, tmp_path):
    raw = _config(**{"images.spec": "digits:12"})
    changed = api.run_campaign(raw, out=tmp_path / "changed", reuse=digits_campaign, report=False)
    assert changed.meta["reuse"]["builds_reused"] == 0 and "the image set" in changed.meta["reuse"]["reason"]
    assert _builds_run(tmp_path / "changed") == changed.meta["builds"]
    older = _older_copy(digits_campaign, tmp_path, _forget_inputs)
    fresh = api.run_campaign(raw, out=tmp_path / "fresh", reuse=older, reuse_or_fresh=True, report=False)
    assert fresh.meta["reuse"]["builds_reused"] == 0 and "older MutateNN" in fresh.meta["reuse"]["reason"]
    assert list(fresh.verdicts.verdict) == list(changed.verdicts.verdict)


def test_each_input_that_changes_outputs_is_recorded(digits_program):
    """The record `--reuse` compares: each input named when it differs (one config change each)."""
    from mutatenn.campaign.reuse import differing_inputs, run_inputs
    from mutatenn.config import parse_config
    from mutatenn.images import load_image_set

    def inputs(**changes):
        raw = _config(**changes)
        return run_inputs(parse_config(raw), digits_program, load_image_set(raw["images"]["spec"]))

    base = inputs()
    assert differing_inputs(base, inputs()) == []
    assert differing_inputs(base, inputs(**{"images.spec": "digits:12"})) == ["the image set"]
    assert differing_inputs(base, inputs(**{"run.repeats": 2})) == ["run.repeats"]
    assert differing_inputs(base, inputs(**{"run.timeout": 60})) == ["run.timeout"]
    assert differing_inputs(base, inputs(**{"run.fast_kill": True})) == ["fast kill and its criterion"]
    fast = inputs(**{"run.fast_kill": True})
    assert differing_inputs(fast, {**inputs(**{"run.fast_kill": True, "kill.criterion": "cosine < 0.99"})}) == [
        "fast kill and its criterion"]
    # Without fast kill a criterion decides no output: builds are reused and judged again.
    assert differing_inputs(base, inputs(**{"kill.criterion": "cosine < 0.99"})) == []
    for key, words in (("tvm", "the TVM version"), ("mutatenn", "the MutateNN version"), ("cpu", "the CPU")):
        assert differing_inputs(base, {**base, key: "other"}) == [words]
