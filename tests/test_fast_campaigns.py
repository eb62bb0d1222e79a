"""The speed-ups of a campaign change no verdict: default schedules agree with naive
loops, shared builds (mutants linked against the original's kernels) with full builds,
fast kill with running every image, and a build cache shared between runs with building
anew. Real campaigns on the bundled digits CNN; a real torchvision model for schedules.

The campaigns use operators whose mutants stay inside their buffers: a mutant reading out
of bounds sees whatever memory lies there, so its verdict may differ between two runs.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import campaign_config

from mutatenn.cli import main

CAMPAIGN = {"images": "digits:24", "select": {"sample": 2, "seed": 3},
            "operators": ["tir_store_add1", "tir_store_scale2", "replace_activation_with_sigmoid", "insert_exp_after",
                          "swap_layers", "duplicate_layer", "pass_disable"],
            "criterion": "top1_agreement < 1.0"}


def campaign(folder: Path, name: str, run: dict | None = None, *args: str) -> Path:
    """Run `CAMPAIGN` (with ``run`` keys beside per_image_cap) as `mutatenn run` does; returns its run folder."""
    config = campaign_config(folder / f"{name}.toml", **CAMPAIGN, run={"per_image_cap": 5, **(run or {})})
    out = folder / name
    assert main(["run", str(config), "--out", str(out), "--jobs", "2", "--quiet", "--no-report", *args]) == 0
    return out


def verdicts(run: Path) -> pd.DataFrame:
    table = pd.read_csv(run / "verdicts.csv", keep_default_na=False)
    return table.sort_values(["mutant_id", "stack"]).reset_index(drop=True)


def builds(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "builds.csv")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same campaign with shared builds (the default) and with every mutant built in full."""
    folder = tmp_path_factory.mktemp("fast")
    return {"folder": folder, "shared": campaign(folder, "shared", {"build_cache": "cache"}),
            "separate": campaign(folder, "separate", {"share_builds": False})}


def test_shared_builds_give_the_same_verdicts_and_values_as_full_builds(runs):
    shared, separate = verdicts(runs["shared"]), verdicts(runs["separate"])
    assert len(shared) >= 12
    assert set(shared["verdict"]) >= {"killed", "survived"}
    pd.testing.assert_frame_equal(shared[["mutant_id", "stack", "verdict", "flipped"]],
                                  separate[["mutant_id", "stack", "verdict", "flipped"]])
    for metric in ("top1_agreement", "rel_l2", "max_abs_error"):
        a, b = shared[metric].replace("", np.nan).astype(float), separate[metric].replace("", np.nan).astype(float)
        assert np.allclose(a, b, rtol=1e-6, atol=1e-7, equal_nan=True), metric
    hashes = {json.dumps(sorted((m["id"], m["hash"]) for m in json.loads((run / "mutants.json").read_text())))
              for run in (runs["shared"], runs["separate"])}
    assert len(hashes) == 1


def test_shared_builds_compile_only_what_the_mutant_changed(runs):
    shared, separate = builds(runs["shared"]), builds(runs["separate"])
    mutants = shared[~shared["program"].str.startswith("original")]
    original = shared[shared["program"] == "original"].iloc[0]
    assert len(mutants) >= 8
    # every kernel of the original was compiled; a mutant compiles its changed ones only
    assert original["kernels_reused"] == 0 and original["kernels_compiled"] >= 6
    assert (mutants["kernels_reused"] > 0).all(), mutants[["program", "kernels_compiled", "kernels_reused"]]
    assert (mutants["kernels_compiled"] < original["kernels_compiled"]).all()
    full = separate[~separate["program"].str.startswith("original")]
    assert (full["kernels_reused"] == 0).all()
    # a pass mutant builds the original with other options: never linked against the stack's kernels
    pass_builds = shared[shared["settles"].str.contains("pass_disable")]
    assert len(pass_builds) and (pass_builds["kernels_reused"] == 0).all()
    # the schedule is the default one on every build, and it scheduled kernels
    assert set(shared["schedule"]) == {"default"} and (shared["scheduled"] > 0).all()


def test_a_second_run_reuses_the_build_cache(runs):
    again = campaign(runs["folder"], "again", {"build_cache": str(runs["folder"] / "cache")})
    first, second = builds(runs["shared"]), builds(again)
    assert not first["cached"].any()
    assert second["cached"].all() and len(second) == len(first)
    pd.testing.assert_frame_equal(verdicts(runs["shared"])[["mutant_id", "stack", "verdict"]],
                                  verdicts(again)[["mutant_id", "stack", "verdict"]])


def test_fast_kill_keeps_every_verdict_and_says_which_images_it_skipped(runs):
    fast_run = campaign(runs["folder"], "fast", None, "--fast-kill")
    fast, full = verdicts(fast_run), verdicts(runs["separate"])
    pd.testing.assert_frame_equal(fast[["mutant_id", "stack", "verdict"]], full[["mutant_id", "stack", "verdict"]])
    scores = [pd.read_csv(run / "scores.csv") for run in (fast_run, runs["separate"])]
    pd.testing.assert_frame_equal(scores[0], scores[1])
    killed = fast[fast["verdict"] == "killed"]
    survived = fast[fast["verdict"] == "survived"]
    assert len(killed) and len(survived)
    run_counts = killed["images_run"].replace("", np.nan).astype(float)
    assert (run_counts < 24).any(), run_counts  # some mutant stopped early...
    assert (run_counts >= 1).all()
    assert (survived["images_run"] == "").all()  # ...and a survivor ran every image
    per_image = pd.read_csv(fast_run / "per_image.csv")
    stopped = killed[run_counts < 5]
    assert len(stopped)
    for row in stopped.itertuples():
        rows = per_image[per_image["mutant_id"] == row.mutant_id]
        assert rows["mutant_top5"].str.startswith("(not run").sum() == len(rows) - int(row.images_run)
    stored = json.loads((fast_run / "run.json").read_text())
    assert stored["fast_kill"] is True


def test_default_schedule_agrees_with_naive_loops_on_mobilenet_v2():
    """A real torchvision model (seeded weights) through the product's TVM runner."""
    from mutatenn.execute import run_variant
    from mutatenn.loading import load_program
    from mutatenn.runners import parse_variant

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = load_program("torchvision:mobilenet_v2", pretrained="never")
    batch = np.random.default_rng(0).standard_normal((2, *program.input.shape[1:])).astype(np.float32)
    naive = run_variant(program, parse_variant("tvm:cpu:O2(schedule=none)"), batch)
    scheduled = run_variant(program, parse_variant("tvm:cpu:O2"), batch)
    assert parse_variant("tvm:cpu:O2").options.schedule == "default"
    a, b = naive.output.logits, scheduled.output.logits
    assert np.isfinite(a).all()
    assert np.linalg.norm(a - b) / np.linalg.norm(a) <= 1e-5
    assert (a.argmax(axis=1) == b.argmax(axis=1)).all()


def test_variant_options_parse_and_commas_inside_them_do_not_split():
    from mutatenn.runners import parse_variant, split_variants

    variant = parse_variant("tvm:cpu-generic:O3(schedule=none)")
    assert (variant.target.name, variant.options.opt_level, variant.options.schedule) == ("cpu-generic", 3, "none")
    assert variant.options.label() == "O3,schedule=none"
    assert split_variants("torch, tvm:cpu(schedule=none,schedule=default),onnxruntime") == [
        "torch", "tvm:cpu(schedule=none,schedule=default)", "onnxruntime"]
