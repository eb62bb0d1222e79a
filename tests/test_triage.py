"""Survivor triage: each survived pair is `no_effect` (outputs the original's bit for bit
on every image) or `weak` (changed, below the kill criterion, with the largest difference
reached); verdicts.csv carries it and the report lists weak survivors first."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import Page, campaign_config, needs_chromium

from mutatenn.campaign.judge import survivor_triage
from mutatenn.cli import main

NO_EFFECT_CAMPAIGN = {"images": "digits:8",
                      "operators": {"pass_tir_option": {"positions": [0]},
                                    "replace_activation_with_tanh": {"positions": [1]}},
                      "stacks": [{"name": "cpu-O2", "target": "cpu", "opt_level": 2}], "run": {"timeout": 120}}


def test_triage_of_planted_outputs():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5, 10)).astype(np.float32)
    assert survivor_triage(ref, ref.copy())[0] == "no_effect"
    with_nan = ref.copy()
    with_nan[2, 3] = np.nan
    assert survivor_triage(with_nan, with_nan.copy())[0] == "no_effect"  # NaN where the original has NaN
    changed = ref.copy()
    changed[3, 7] += 0.25
    changed[1, 0] += 0.125
    word, text = survivor_triage(ref, changed)
    assert word == "weak"
    assert "changed on 2 of 5 images" in text and "largest max_abs_error 0.25" in text and "image #3" in text


def test_campaign_survivor_is_weak_and_others_untriaged(digits_campaign):
    verdicts = pd.read_csv(digits_campaign / "verdicts.csv", dtype=str, keep_default_na=False).set_index("mutant_id")
    survivor = verdicts.loc["replace_activation_with_tanh#1"]
    assert survivor["triage"] == "weak" and survivor["reason"].startswith("weak: outputs changed on ")
    others = verdicts[verdicts["verdict"] != "survived"]
    assert set(others["triage"]) == {""}


@pytest.fixture(scope="module")
def no_effect_run(tmp_path_factory):
    """A campaign with a pass mutant that changes no output bit and a weak survivor."""
    folder = tmp_path_factory.mktemp("triage")
    campaign_config(folder / "campaign.toml", **NO_EFFECT_CAMPAIGN)
    assert main(["run", str(folder / "campaign.toml"), "--out", str(folder / "run"), "--quiet"]) == 0
    return folder / "run"


@pytest.mark.slow
def test_campaign_triage_tells_no_effect_from_weak(no_effect_run):
    verdicts = pd.read_csv(no_effect_run / "verdicts.csv", dtype=str, keep_default_na=False).set_index("mutant_id")
    assert verdicts.loc["pass_tir_option#0", ["verdict", "triage"]].tolist() == ["survived", "no_effect"]
    assert verdicts.loc["pass_tir_option#0", "reason"] == "no effect: outputs bit-identical to the original's on all 8 images"
    assert verdicts.loc["replace_activation_with_tanh#1", ["verdict", "triage"]].tolist() == ["survived", "weak"]


@pytest.mark.slow
@needs_chromium
def test_report_lists_weak_survivors_first(browser, no_effect_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(no_effect_run, run)
    assert main(["report", str(run)]) == 0
    p = Page(browser, run / "report.html")
    rows = p.page.locator("#survivor-table tbody tr")
    assert [rows.nth(i).get_attribute("data-triage") for i in range(rows.count())] == ["weak", "no_effect"]
    assert rows.nth(0).locator("td.id").inner_text() == "replace_activation_with_tanh#1"
    assert "bit-identical" in rows.nth(1).inner_text()
    p.check_clean()
