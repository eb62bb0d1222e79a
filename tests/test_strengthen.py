"""`mutatenn strengthen`: new images that kill a campaign's survivors, rescored by the
campaign engine; bundled sets written as files read back as the same tensors; bad input
refused in one line with nothing written; a mutant crashing during the search is a line."""
from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from mutatenn.cli import main
from mutatenn.execute import input_batch
from mutatenn.images import load_folder, load_image_set, preprocess
from mutatenn.strengthen.rescore import write_image_folder
from mutatenn.strengthen.search import SearchSettings, compose, search_seed

SURVIVOR = "replace_activation_with_tanh#1"  # the digits_campaign fixture's one survivor


@pytest.fixture(scope="module")
def run_dir(digits_campaign):
    return digits_campaign


@pytest.fixture(scope="module")
def strengthened(run_dir, tmp_path_factory):
    """One strengthen run on the fixture's survivor (module-scoped: several tests read it)."""
    out = tmp_path_factory.mktemp("strengthen") / "out"
    code = main(["strengthen", str(run_dir), "--stack", "cpu-O2", "--out", str(out), "--budget", "300",
                 "--epsilon", "24", "--quiet", "--jobs", "1"])
    assert code == 0
    return out


def test_bundled_digits_round_trip_through_image_files(tmp_path, digits_program):
    """A bundled digit written as a PNG and read back through `--images DIR` is the same
    input tensor, labels included (the folder can stand in for the bundled set)."""
    bundled = load_image_set("digits:8")
    write_image_folder(tmp_path / "set", bundled, tmp_path / "none")
    folder = load_folder(tmp_path / "set")
    order = [folder.names.index(f"{label}/{name}.png") for name, label in zip(bundled.names, bundled.labels)]
    assert [folder.labels[i] for i in order] == bundled.labels
    again = input_batch(digits_program, folder)[order]
    np.testing.assert_array_equal(again, input_batch(digits_program, bundled))


def test_bundled_photos_round_trip_through_image_files(tmp_path):
    bundled = load_image_set("photos:2")
    write_image_folder(tmp_path / "set", bundled, tmp_path / "none")
    folder = load_folder(tmp_path / "set")
    assert folder.names == sorted(f"{n}.png" for n in bundled.names)
    order = [folder.names.index(f"{n}.png") for n in bundled.names]
    shape = (1, 3, 224, 224)
    np.testing.assert_array_equal(preprocess(folder, "imagenet", shape)[order], preprocess(bundled, "imagenet", shape))


def test_search_keeps_the_original_label_and_the_bound():
    """The random search on two linear 'models' that differ a little: the image found is
    within epsilon of the seed, the original still gives the seed's label, the mutant
    another; the same seed gives the same image."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, 64))
    seed = rng.integers(0, 256, size=(8, 8)).astype(np.uint8)
    bias = -weights @ seed.reshape(-1).astype(float)
    bias[0] += 40.0  # the original gives label 0 with a small margin
    shifted = bias.copy()
    shifted[1] += 30.0  # the mutant's label 1 is nearer

    def classify(image):
        x = image.reshape(-1).astype(float)
        return weights @ x + bias, weights @ x + shifted

    def found(seed_value):
        return search_seed(seed, 0, classify, SearchSettings(8), 400, np.random.default_rng(seed_value))

    first = found(1)
    assert first.image is not None and first.queries <= 400
    assert np.abs(first.image.astype(int) - seed.astype(int)).max() <= 8
    original, mutant = classify(first.image)
    assert np.argmax(original) == 0 and np.argmax(mutant) != 0
    np.testing.assert_array_equal(found(1).image, first.image)


def test_transforms_are_bounded_images():
    seed = np.full((8, 8), 128, np.uint8)
    out = compose(seed.astype(np.float32), {"brightness": 1.0}, {"brightness": 0.1}, None, np.zeros((8, 8)))
    assert out.dtype == np.uint8 and int(out[0, 0]) == 128 + round(0.1 * 255)


def test_a_sample_draws_weak_survivors_before_no_effect_ones():
    """A sample spends its budget on survivors whose outputs moved before those no image
    has moved: all of it when there are enough weak ones, then the rest are drawn."""
    from mutatenn.strengthen.session import sample_ids

    ids = ["w1", "w2", "w3", "n1", "n2", "n3", "n4"]
    for seed in range(5):
        assert set(sample_ids(ids, 2, seed, weak=3)) <= {"w1", "w2", "w3"}
        picked = sample_ids(ids, 5, seed, weak=3)
        assert {"w1", "w2", "w3"} <= set(picked) and len(picked) == 5
        assert picked == [m for m in ids if m in picked]  # campaign order kept
    assert sample_ids(ids, None, 0, weak=3) == ids and sample_ids(ids, 9, 0, weak=0) == ids
    assert len(sample_ids(ids, 3, 0, weak=0)) == 3


@pytest.mark.slow
def test_strengthen_kills_the_survivor_and_rescores(strengthened, run_dir):
    table = pd.read_csv(strengthened / "strengthen.csv", dtype=str, keep_default_na=False)
    assert list(table["mutant_id"]) == [SURVIVOR]
    row = table.iloc[0]
    assert row["outcome"] == "killed" and 0 < int(row["queries"]) <= 300
    # The original keeps the seed's label, which is its ground truth (the image's folder).
    assert row["image"].split("/")[0] == row["original_label"] != row["mutant_label"]
    assert (strengthened / "images" / row["image"]).is_file()
    # Rescored by the campaign engine on old + new images: the survivor is killed there,
    # by the new image alone.
    verdicts = pd.read_csv(strengthened / "rescore" / "run" / "verdicts.csv").set_index("mutant_id")["verdict"]
    assert verdicts[SURVIVOR] == "killed"
    kills = pd.read_csv(strengthened / "kills.csv", dtype=str)
    assert SURVIVOR in kills.set_index("image").loc[row["image"], "mutants"].split(";")
    summary = json.loads((strengthened / "summary.json").read_text())
    assert summary["score_before"]["survived"] == 1 and summary["score_after"]["survived"] == 0
    assert summary["score_after"]["score"] > summary["score_before"]["score"]
    cover = pd.read_csv(strengthened / "cover.csv", dtype=str)
    assert row["image"] in set(cover["image"])
    killed = {m for ms in cover["mutants"] for m in ms.split(";")}
    assert killed == {m for m, v in verdicts.items() if v == "killed"}
    # The new images folder is an image set `--images` takes, labels and all.
    found = load_folder(strengthened / "images")
    assert found.labels == [row["original_label"]]


@pytest.mark.slow
def test_strengthen_resumes_without_searching_again(strengthened, run_dir, capsys):
    before = (strengthened / "strengthen.csv").read_text()
    code = main(["strengthen", str(run_dir), "--stack", "cpu-O2", "--out", str(strengthened), "--budget", "300",
                 "--epsilon", "24", "--quiet"])
    assert code == 0
    assert (strengthened / "strengthen.csv").read_text() == before
    assert "1 killed by a new image" in capsys.readouterr().out


def _no_survivors(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    db = sqlite3.connect(copy / "results.sqlite")
    db.execute("UPDATE verdicts SET verdict = 'killed' WHERE verdict = 'survived'")
    db.commit()
    db.close()
    return copy


@pytest.mark.parametrize("args, words", [
    (["--budget", "0"], "--budget must be at least 1"),
    (["--epsilon", "100"], "--epsilon must be"),
    (["--transforms", "rotate=90"], "rotate=90 is out of range"),
    (["--transforms", "sharpen"], "unknown transform 'sharpen'"),
    (["--epsilon", "0"], "could not change an image"),
    (["--stack", "nope"], "stack 'nope' is not in run"),
    (["--sample", "0"], "--sample must be at least 1"),
    ("no-survivors", "no mutant survived on stack 'cpu-O2'"),
])
def test_bad_input_is_one_line_and_writes_nothing(run_dir, tmp_path, capsys, args, words):
    source = run_dir
    if args == "no-survivors":
        source, args = _no_survivors(run_dir, tmp_path), []
    out = tmp_path / "out"
    argv = ["strengthen", str(source), "--stack", "cpu-O2", "--out", str(out), "--quiet", *args]
    if "--stack" in args:
        argv = ["strengthen", str(source), "--out", str(out), "--quiet", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err
    assert not out.exists()


def test_a_mutant_that_crashes_during_the_search_gets_its_line(run_dir, tmp_path):
    """A segfault in the mutant's worker (injected; a fresh process, so its workers see it)."""
    out = tmp_path / "out"
    done = run_cli("strengthen", str(run_dir), "--stack", "cpu-O2", "--out", str(out), "--budget", "5", "--quiet",
                   env={"MUTATENN_TEST_FAULTS": json.dumps({"segfault": [SURVIVOR]})})
    assert done.returncode == 0, done.stderr
    row = pd.read_csv(out / "strengthen.csv", dtype=str, keep_default_na=False).iloc[0]
    assert row["mutant_id"] == SURVIVOR and row["outcome"] == "crashed" and "worker process died" in row["reason"]
    assert not list((out / "images").rglob("*.png"))
    assert "crashed: 1" in done.stdout
