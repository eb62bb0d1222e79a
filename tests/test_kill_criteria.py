"""Kill criteria users can state: `and` / `or`, `flipped >= N`, `accuracy_drop > D`,
checked term by term and on a real campaign against the stored outputs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import campaign_config

import operators
from mutatenn.cli import main
from operators import ranking
from operators.criteria import AllOf, AnyOf, CountTerm

CAMPAIGN = {"images": "digits:40", "select": {"sample": 3, "seed": 2},
            "operators": {"fuzz_weight_gaussian": "default", "drop_weight_precision": "default",
                          "replace_activation_with_tanh": "default", "tir_store_scale2": "default"},
            "run": {"timeout": 300, "jobs": 2, "keep_artifacts": True}}


def test_criteria_combine_terms_with_and_binding_tighter_than_or():
    c = operators.parse_criterion("flipped >= 2 or rel_l2 > 1e-2 and kendall_tau < 0.9")
    assert isinstance(c, AnyOf) and isinstance(c.parts[1], AllOf) and isinstance(c.parts[0], CountTerm)
    assert operators.parse_criterion(str(c)) == c
    near = {"flipped": 0, "rel_l2": 0.5, "kendall_tau": 0.95, "accuracy_drop": 0.0}
    assert not c.is_killed(near)  # rel_l2 alone is not enough: the `and` needs kendall_tau too
    assert c.is_killed({**near, "kendall_tau": 0.5})
    assert c.is_killed({**near, "flipped": 2})
    assert not operators.parse_criterion("accuracy_drop > 0.05").is_killed({"accuracy_drop": float("nan")})


@pytest.mark.parametrize("text, message", [
    ("flipped > 2", "use '>='"), ("flipped >= 0", "whole number"), ("flipped >= 1.5", "whole number"),
    ("accuracy_drop > 1.5", r"in \[0, 1\)"), ("rel_l2 > 1e-3 and nope < 1", "unknown operator 'nope'"),
])
def test_bad_criteria_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        operators.parse_criterion(text)


def test_metric_terms_take_their_own_depth_and_persistence():
    c = operators.parse_criterion("topk_overlap(k=2) < 1 and rbo(depth=3, p=0.5) < 0.9")
    assert [t.key for t in c.terms()] == ["topk_overlap(k=2)", "rbo(depth=3, p=0.5)"]
    assert operators.parse_criterion(str(c)) == c
    ref = np.array([[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]], dtype=np.float32)
    out = ref[:, [0, 2, 1, 3, 4, 5, 6, 7, 8, 9]]  # labels 1 and 2 swap places: top-2 loses one label
    values = operators.criteria.term_values(c, {"logits": ref}, {"logits": out})
    assert values["topk_overlap(k=2)"] == 0.5
    assert values["rbo(depth=3, p=0.5)"] == pytest.approx(ranking.rbo(ref, out, p=0.5, depth=3))
    assert operators.compare_outputs(ref, out)["topk_overlap"] == 1.0  # the default k = 5 sees no change
    assert c.is_killed(values)


@pytest.mark.parametrize("text, message", [
    ("rbo(p=2) < 0.9", "p must lie strictly between 0 and 1"), ("rbo(q=1) < 0.9", "rbo takes p=, depth="),
    ("topk_overlap(k=0) < 1", "positive integer"), ("topk_overlap(k=x) < 1", "expected a number"),
    ("rel_l2(k=3) > 1e-3", "rel_l2 takes no parameters"),
])
def test_bad_metric_parameters_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        operators.parse_criterion(text)


def test_flipped_prefix_bound_stops_only_when_enough_images_flipped():
    ref = np.eye(4, dtype=np.float32)
    out = ref[:, ::-1].copy()  # every image's top-1 changes
    c = operators.parse_criterion("flipped >= 3")
    assert not c.met_by_prefix(ref, out[:2]) and c.met_by_prefix(ref, out[:3])


def test_a_campaign_judges_flipped_and_accuracy_drop_from_its_own_outputs(tmp_path):
    criterion = "flipped >= 2 or accuracy_drop > 0.05 and rbo(depth=3, p=0.5) < 0.99"
    config = campaign_config(tmp_path / "c.toml", **CAMPAIGN, criterion=criterion)
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--quiet", "--no-report"]) == 0
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    judged = verdicts[verdicts["verdict"].isin(["killed", "survived"])]
    assert len(judged) >= 6
    meta = json.loads((out / "run.json").read_text())
    from mutatenn.images import load_image_set

    truth = np.array([int(x) for x in load_image_set("digits:40").labels])  # digits' classes are "0".."9"
    ref = np.load(out / "outputs" / f"{meta['originals']['cpu']}.npz")["logits"]
    for row in judged.itertuples():
        logits = np.load(out / "outputs" / f"{verdicts_artifact(out, row.mutant_id)}.npz")["logits"]
        drop = operators.accuracy(ref, truth) - operators.accuracy(logits, truth)
        shallow = ranking.rbo(ref, logits, p=0.5, depth=3)  # the criterion's own depth and persistence
        expected = int(row.flipped) >= 2 or (drop > 0.05 and shallow < 0.99)
        assert (row.verdict == "killed") == expected, (row.mutant_id, row.flipped, drop)
    assert set(judged["verdict"]) == {"killed", "survived"}  # the criterion splits this set


def verdicts_artifact(out, mutant_id: str) -> str:
    """The artifact key the store filed a mutant's verdict under."""
    import sqlite3

    with sqlite3.connect(out / "results.sqlite") as db:
        return db.execute("SELECT artifact FROM verdicts WHERE mutant_id = ?", (mutant_id,)).fetchone()[0]


def test_accuracy_drop_needs_labelled_images(tmp_path, capsys):
    config = campaign_config(tmp_path / "c.toml", **{**CAMPAIGN, "images": "photos:4"},
                             criterion="accuracy_drop > 0.05")
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "needs labelled images" in capsys.readouterr().err
