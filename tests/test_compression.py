"""Compression and precision as stack axes: each option on the digits model, the cost
columns and picture of `compare`, bad input, and a campaign's per-stack scores and
masked-fault list."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import Page, run_cli

from mutatenn.compression.pruning import prune_arrays
from mutatenn.compression.quantize import fake_quantize_weight, uint8_params
from reports.charts import pareto_front

VARIANTS = ["tvm:cpu", "tvm:cpu(precision=fp16)", "tvm:cpu(quantize=int8-static, calibration=6)",
            "tvm:cpu(prune=0.5)", "tvm:cpu(prune=0.5:channel)", "onnxruntime", "onnxruntime(quantize=int8-static, calibration=6)",
            "onnxruntime(precision=fp16)", "onnxruntime(prune=0.5)", "torch(precision=fp16)"]


# ------------------------------------------------------------------ pure functions (fast)
def test_magnitude_pruning_is_global_and_deterministic():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(8, 4)).astype("float32"), 10 * rng.normal(size=(4, 4)).astype("float32")]
    first = prune_arrays(arrays, [0, 0], 0.5, "magnitude")
    again = prune_arrays(arrays, [0, 0], 0.5, "magnitude")
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert sum(np.count_nonzero(a == 0) for a in first) == 24  # half of 48, across both arrays
    assert np.count_nonzero(first[1]) > np.count_nonzero(first[0])  # the larger weights survive more


def test_channel_pruning_zeroes_whole_channels():
    array = np.arange(1, 1 + 6 * 3, dtype="float32").reshape(6, 3)
    out = prune_arrays([array], [0], 0.5, "channel")[0]
    assert np.array_equal(out[:3], np.zeros((3, 3))) and np.array_equal(out[3:], array[3:])


def test_int8_weight_quantisation_keeps_255_levels_per_channel():
    w = np.random.default_rng(1).normal(size=(4, 50)).astype("float32")
    q = fake_quantize_weight(w, 0)
    assert all(len(np.unique(row)) <= 255 for row in q)
    assert np.abs(q - w).max() <= np.abs(w).max() / 127 / 2 + 1e-6
    scale, zero = uint8_params(-1.0, 3.0)
    assert 0 <= zero <= 255 and scale == pytest.approx(4 / 255)


def test_pareto_front_keeps_points_nothing_beats():
    points = [{"label": "a", "latency": 1.0, "agreement": 0.9}, {"label": "b", "latency": 2.0, "agreement": 1.0},
              {"label": "c", "latency": 2.5, "agreement": 0.95}, {"label": "d", "latency": float("nan"), "agreement": 1}]
    assert pareto_front(points) == {"a", "b"}


# ------------------------------------------------------------------ bad input (one line, exit 2)
@pytest.mark.parametrize("variant, words", [
    ("tvm:cpu(precision=fp8)", "precision must be one of fp32, fp16, bf16"),
    ("onnxruntime(quantize=int4)", "quantize must be one of"),
    ("tvm:cpu(prune=1.0)", "amount must be in [0, 1)"),
    ("tvm:cpu(prune=-0.1)", "amount must be in [0, 1)"),
    ("tvm:cpu(precision=bf16)", "TVM 0.27's ToMixedPrecision makes float16 only"),
    ("onnxruntime(quantize=int8-static, calibration=9)", "calibration = 9 images, but the image set holds 4"),
    ("onnxruntime(quantize=int8-static, precision=fp16)", "cannot be combined"),
])
def test_bad_compression_options_give_one_line(tmp_path, variant, words):
    out = tmp_path / "out"
    proc = run_cli("compare", "--model", "digits", "--images", "digits:4", "--variants", variant,
                   "--baseline", "torch", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mutatenn: error:") and words in lines[0], proc.stderr
    assert not out.exists()


def test_bad_prune_in_a_stack_names_its_key(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(textwrap.dedent("""
        [model]
        spec = "digits"
        [images]
        spec = "digits:4"
        [[stacks]]
        name = "p"
        target = "cpu"
        prune = { amount = 0.5, method = "random" }
        [kill]
        criterion = "top1_agreement < 1.0"
    """))
    proc = run_cli("run", str(config), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "stacks[0].prune" in proc.stderr and "method must be one of" in proc.stderr
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ compare (slow: every variant builds or converts)
@pytest.fixture(scope="module")
def compressed_comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "out"
    proc = run_cli("compare", "--model", "digits", "--images", "digits:12", "--variants", ",".join(VARIANTS),
                   "--baseline", "torch", "--out", str(out), "--threads", "1", "--jobs", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_each_option_agrees_with_fp32_and_costs_less(compressed_comparison):
    table = pd.read_csv(compressed_comparison / "comparison.csv", keep_default_na=False).set_index("variant")
    assert (table["threads"] == 1).all()
    for variant in VARIANTS:
        row = table.loc[variant]
        assert row["error"] == "", row["error"]
        if "channel" not in variant:  # half the channels gone without fine-tuning: labels are not kept
            assert float(row["top1_agreement"]) >= 0.75, variant  # digits: compression keeps most labels
        assert float(row["size_bytes"]) > 0 and int(row["nonzeros"]) <= int(row["parameters"])
    fp32, tvm_fp32 = table.loc["onnxruntime"], table.loc["tvm:cpu"]
    assert table.loc["onnxruntime(quantize=int8-static, calibration=6)", "size_bytes"] < fp32["size_bytes"] / 2
    assert table.loc["onnxruntime(precision=fp16)", "size_bytes"] < fp32["size_bytes"]
    assert int(table.loc["tvm:cpu(prune=0.5:channel)", "nonzeros"]) < int(tvm_fp32["nonzeros"])
    for pruned in ("tvm:cpu(prune=0.5)", "onnxruntime(prune=0.5)"):
        row = table.loc[pruned]
        assert int(row["nonzeros"]) <= 0.55 * int(row["parameters"])  # weights are most parameters
        assert row["compression"] == "prune=0.5:magnitude"
    assert table.loc["tvm:cpu(prune=0.5)", "size_bytes"] == tvm_fp32["size_bytes"]  # zeros do not shrink a file
    assert 0 < float(table.loc["tvm:cpu(precision=fp16)", "max_rel_error"]) < 0.05
    assert json.loads((compressed_comparison / "run.json").read_text())["threads"] == 1


@pytest.mark.slow
def test_cost_picture_in_chromium(browser, compressed_comparison):
    p = Page(browser, compressed_comparison / "report.html")
    chart = p.page.locator("#costs .cost-chart svg")
    assert chart.count() == 1 and chart.bounding_box()["width"] > 300
    assert p.page.locator("#costs g[id^='point-']").count() == len(VARIANTS) + 1  # the baseline too
    assert p.page.locator("#costs g#pareto-front").count() == 1
    assert "Pareto front:" in p.page.locator("#costs .pareto").inner_text()
    p.check_clean()


# ------------------------------------------------------------------ a campaign with compression stacks
@pytest.mark.slow
def test_compression_stacks_score_and_list_masked_faults(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(textwrap.dedent("""
        [model]
        spec = "digits"
        [images]
        spec = "digits:12"
        [mutants]
        select = { positions = [0, 1] }
        [mutants.operators]
        fuzz_weight_gaussian = "default"
        replace_activation_with_sigmoid = "default"
        [[stacks]]
        name = "fp32"
        target = "cpu"
        [[stacks]]
        name = "fp16"
        target = "cpu"
        precision = "fp16"
        [[stacks]]
        name = "int8"
        target = "cpu"
        quantize = "int8-static"
        calibration = 6
        [[stacks]]
        name = "pruned"
        target = "cpu"
        prune = 0.5
        [kill]
        criterion = "top1_agreement < 1.0"
        [run]
        jobs = 2
        threads = 1
    """))
    out = tmp_path / "run"
    proc = run_cli("run", str(config), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = pd.read_csv(out / "scores.csv")
    assert set(scores["stack"]) >= {"fp32", "fp16", "int8", "pruned"}
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert set(verdicts["verdict"]) <= {"killed", "survived"}  # every compression applied to every mutant
    masked = pd.read_csv(out / "masked_faults.csv")
    assert list(masked.columns)[:5] == ["mutant_id", "operator", "level", "fp32_stack", "compressed_stack"]
    wide = verdicts.pivot(index="mutant_id", columns="stack", values="verdict")
    expected = sum(1 for other in ("fp16", "int8", "pruned") for m in wide.index
                   if {wide.at[m, "fp32"], wide.at[m, other]} == {"killed", "survived"})
    assert len(masked) == expected
    meta = json.loads((out / "run.json").read_text())
    assert {p["compressed_stack"] for p in meta["compression_pairs"]} == {"fp16", "int8", "pruned"}
    assert meta["threads"] == 1
    assert "Faults compression hides" in (out / "report.html").read_text()
