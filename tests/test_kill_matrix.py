"""Score confidence (Wilson intervals, sampled fraction, --fail-under-bound) and the kill
matrix (which image kills which mutant), on one real campaign of the bundled digits CNN."""
from __future__ import annotations

import json
import math
import shutil
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import campaign_config
from scipy.stats import norm

from mutatenn.cli import main
from reports import render_report
from reports.campaign import greedy_cover, read_kill_matrix, stack_kills
from runfolder.scores import wilson_interval

STACKS = ["cpu-O0", "cpu-O2"]
IMAGES = 30
SCORED = ["killed", "survived", "crashed", "timed_out"]
VERDICTS = [*SCORED, "non_viable", "equivalent"]

# A global seeded sample (3 of tir_store_add1's sites) and one explicit position: mutants that
# stay inside their buffers (see tests/test_campaign.py), on two stacks; fast kill, so that some
# images of a killed mutant are never run.
CAMPAIGN = {"images": f"digits:{IMAGES}", "select": {"sample": 3, "seed": 3},
            "operators": {"tir_store_add1": "default", "tir_store_cast_int8": {"positions": [0]}},
            "stacks": [{"name": "cpu-O0", "target": "cpu", "opt_level": 0},
                       {"name": "cpu-O2", "target": "cpu", "opt_level": 2}],
            "run": {"timeout": 300, "per_image_cap": 4, "fast_kill": True}}


def reference_wilson(killed: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval in percent, written out from the formula."""
    z = norm.ppf(0.975)
    p = killed / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return 100 * (centre - half), 100 * (centre + half)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill-matrix")
    config = campaign_config(folder / "campaign.toml", **CAMPAIGN)
    out = folder / "run"
    start = time.perf_counter()
    assert main(["run", str(config), "--out", str(out), "--jobs", "2", "--quiet"]) == 0
    return {"config": config, "out": out, "seconds": time.perf_counter() - start}


def read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name, keep_default_na=False, na_values={"killed_by_image": [""]})


# ---------------------------------------------------------------- score confidence

def test_wilson_interval_of_a_known_count():
    low, high = wilson_interval(8, 10)
    assert (round(low, 1), round(high, 1)) == (49.0, 94.3)
    assert (low, high) == pytest.approx(reference_wilson(8, 10), abs=1e-9)
    for killed, n in ((0, 7), (7, 7), (1, 1), (13, 450)):
        low, high = wilson_interval(killed, n)
        assert (low, high) == pytest.approx(reference_wilson(killed, n), abs=1e-9)
        assert 0 <= low <= 100 * killed / n <= high <= 100
    assert wilson_interval(0, 0) is None


def test_scores_carry_the_interval_and_the_sampled_fraction(campaign, digits_program):
    import mutators

    out = campaign["out"]
    scores, verdicts = read(out, "scores.csv"), read(out, "verdicts.csv")
    assert {"score_low", "score_high", "sampled", "population"} <= set(scores.columns)
    # The sites each operator has (every site a mutant), counted apart from the campaign.
    sites = {op: len(mutators.enumerate_mutants(digits_program.mod, operators=[op]))
             for op in ("tir_store_add1", "tir_store_cast_int8")}
    assert all(n > 3 for n in sites.values())
    levels = {"tir": sum(sites.values())}
    for row in scores.itertuples(index=False):
        part = verdicts[verdicts["stack"] == row.stack]
        if row.group != "all":
            part = part[part[row.group] == row.key]
        n = int(part["verdict"].isin(SCORED).sum())
        killed = int((part["verdict"] == "killed").sum())
        assert (row.killed, n) == (killed, sum(getattr(row, v) for v in SCORED))
        low, high = reference_wilson(killed, n)
        assert (float(row.score_low), float(row.score_high)) == pytest.approx((low, high), abs=0.006), row
        assert float(row.score_low) <= float(row.score) <= float(row.score_high)
        assert row.sampled == len(part)
        expected = {"all": sum(sites.values()), "operator": sites.get(row.key), "level": levels.get(row.key)}
        assert row.population == expected[row.group], row
    overall = scores[scores["group"] == "all"]
    assert list(overall["stack"]) == STACKS
    assert (overall["sampled"] == 4).all() and (overall["population"] == sum(sites.values())).all()


def test_fail_under_bound_lower_gates_on_the_interval(campaign, capsys):
    overall = read(campaign["out"], "scores.csv").query("group == 'all'")
    lowest_score, lowest_low = overall["score"].min(), overall["score_low"].min()
    assert lowest_low < lowest_score  # something was killed: the interval reaches below the score
    threshold = round((lowest_low + lowest_score) / 2, 3)
    args = ["run", str(campaign["config"]), "--out", str(campaign["out"]), "--quiet", "--no-report",
            "--fail-under", str(threshold)]
    assert main(args) == 0
    assert main(args + ["--fail-under-bound", "score"]) == 0
    capsys.readouterr()
    assert main(args + ["--fail-under-bound", "lower"]) == 3
    err = capsys.readouterr().err
    below = overall[overall["score_low"] < threshold]["stack"]
    assert len(below) and all(f"stack {s!r}" in err for s in below)
    assert "lower bound of the 95% interval" in err and f"below --fail-under {threshold:g}%" in err


# ---------------------------------------------------------------- kill matrix

def test_kill_matrix_agrees_with_verdicts_per_image_and_flipped_images(campaign):
    out = campaign["out"]
    matrix, verdicts, per_image = read(out, "kill_matrix.csv"), read(out, "verdicts.csv"), read(out, "per_image.csv")
    names = [i["name"] for i in json.loads((out / "images.json").read_text())]
    assert list(matrix.columns[:3]) == ["mutant_id", "stack", "image"] and "killed_by_image" in matrix.columns
    assert matrix["killed_by_image"].dropna().isin([0, 1]).all()
    judged = verdicts[verdicts["verdict"].isin(["killed", "survived"])]
    assert {"killed", "survived"} <= set(judged["verdict"])
    assert len(matrix) == len(judged) * IMAGES
    by_pair = {key: g for key, g in matrix.groupby(["mutant_id", "stack"])}
    assert set(by_pair) == set(zip(judged["mutant_id"], judged["stack"]))
    with sqlite3.connect(out / "results.sqlite") as db:
        stored = {(m, s): json.loads(f or "[]") for m, s, f in
                  db.execute("SELECT mutant_id, stack, flipped_images FROM verdicts")}
    stopped = 0
    for r in judged.itertuples(index=False):
        rows = by_pair[(r.mutant_id, r.stack)]
        assert list(rows["image"]) == names
        # Fast kill: the images after the ones run are empty (not run), the others 0 or 1.
        ran = IMAGES if str(r.images_run) == "" else int(r.images_run)
        stopped += ran < IMAGES
        assert rows["killed_by_image"].iloc[:ran].notna().all() and rows["killed_by_image"].iloc[ran:].isna().all()
        killers = set(rows.loc[rows["killed_by_image"] == 1, "image"])
        # The default criterion (top1_agreement < 1.0): killed iff some image alone kills it.
        assert (r.verdict == "killed") == bool(killers), r
        assert len(killers) == int(r.flipped)  # str when an equivalent row leaves the column partly empty
        assert killers == {names[i] for i in stored[(r.mutant_id, r.stack)]}
    assert stopped  # some killed mutant stopped before the last image
    merged = per_image.merge(matrix, on=["mutant_id", "stack", "image"], how="left", validate="one_to_one")
    assert len(merged) == len(per_image) > 0
    not_run = merged["mutant_top5"].str.startswith("(not run")
    assert not_run.any() and (merged["killed_by_image"].isna() == not_run).all()
    assert (merged["flipped"].astype(str).eq("True") == merged["killed_by_image"].eq(1)).all()


def test_greedy_cover_on_a_known_case():
    kills = {"a": {1, 2, 3}, "b": {1, 2}, "c": {4}, "d": set(), "e": {3, 4}}
    assert greedy_cover(kills, list(kills)) == ["a", "c"]  # a first (3 new), then c (ties go to the earlier)
    assert greedy_cover({"x": set()}) == [] and greedy_cover({}) == []
    # Greedy is not always the smallest: 6 mutants, the optimum {p, q}, greedy takes the big one first.
    kills = {"big": {1, 2, 3, 4}, "p": {1, 2, 5}, "q": {3, 4, 6}}
    assert greedy_cover(kills) == ["big", "p", "q"]


def test_report_shows_the_kill_matrix_and_a_cover_that_kills_everything(campaign):
    out = campaign["out"]
    html = (out / "report.html").read_text()
    assert 'id="kill-matrix"' in html and 'href="#kill-matrix"' in html
    matrix, verdicts = read_kill_matrix(out), read(out, "verdicts.csv")
    section = html.split('<section id="kill-matrix">')[1].split("</section>")[0]
    cards = {part.split('"', 1)[0]: part for part in section.split('<div class="card km-stack" data-stack="')[1:]}
    assert list(cards) == STACKS
    for stack in STACKS:
        kills, ran, judged = stack_kills(matrix, stack)
        cover = greedy_cover(kills, ran)
        killed = set(verdicts[(verdicts["stack"] == stack) & (verdicts["verdict"] == "killed")]["mutant_id"])
        assert killed and set().union(*(kills[x] for x in cover)) == killed
        assert 1 <= len(cover) <= min(len(ran), len(killed)) and len(ran) == IMAGES
        card = cards[stack]
        assert f'data-size="{len(cover)}"' in card and ", ".join(cover) in card
        # Every killed cell is drawn (30 images x at most 3 killed mutants fit the caps).
        hits = matrix[(matrix["stack"] == stack) & (matrix["killed_by_image"] == 1)]
        assert card.count('class="km hit"') == len(hits) > 0
        assert card.count('<tr class="cover"') == len(cover)
        silent = IMAGES - hits["image"].nunique()
        single = int((hits.groupby("mutant_id").size() == 1).sum())
        assert f'km-silent-count">{silent}<' in card and f'km-single-count">{single}<' in card
    # The score table shows each stack's interval and the sites taken.
    overall = read(out, "scores.csv").query("group == 'all'")
    for r in overall.itertuples(index=False):
        assert f'data-stack="{r.stack}">{r.score_low:.1f}–{r.score_high:.1f}%<' in html
        assert f'data-stack="{r.stack}">{r.sampled} of {r.population} (' in html
        assert f'class="score-interval" data-stack="{r.stack}" data-low="{r.score_low:.2f}"' in html


def test_an_old_run_folder_without_the_new_file_and_columns_still_renders(campaign, tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    for name in ("run.json", "images.json", "mutants.json", "verdicts.csv", "per_image.csv", "scores.csv",
                 "discrepancies.csv"):
        shutil.copy(campaign["out"] / name, folder / name)
    scores = pd.read_csv(folder / "scores.csv")
    scores.drop(columns=["score_low", "score_high", "sampled", "population"]).to_csv(folder / "scores.csv",
                                                                                     index=False)
    html = render_report(folder).read_text()
    assert "no kill_matrix.csv" in html and 'class="card km-stack"' not in html
    for r in scores[scores["group"] == "all"].itertuples(index=False):  # interval recomputed from the counts
        low, high = reference_wilson(r.killed, sum(getattr(r, v) for v in SCORED))
        assert f'data-stack="{r.stack}">{low:.1f}–{high:.1f}%<' in html
