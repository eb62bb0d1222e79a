"""`mutatenn compare` end to end, and every bad input a user can give it."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tvm
from conftest import free_port, run_cli


def test_compare_writes_tables_and_prints_a_readable_table(tmp_path):
    out = tmp_path / "cmp"
    proc = run_cli("compare", "--model", "digits", "--images", "digits:30", "--variants",
                   "tvm:cpu:O0,tvm:cpu-generic:O3,onnxruntime", "--baseline", "torch", "--out", str(out),
                   "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert "tvm:cpu-generic:O3" in proc.stdout and "comparison.csv" in proc.stdout
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["variant"]) == ["torch", "tvm:cpu:O0", "tvm:cpu-generic:O3", "onnxruntime"]
    for column in ["variant", "baseline", "top1_agreement", "rel_l2", "latency_ms_median", "accuracy"]:
        assert column in table.columns
    assert (table["baseline"] == "torch").all()
    assert (table["top1_agreement"] == 1.0).all()
    assert (table["rel_l2"] < 1e-5).all()
    assert (table["accuracy"] >= 0.9).all()
    assert (table["latency_ms_median"] > 0).all()
    per_image = pd.read_csv(out / "per_image.csv", dtype={"top1": str, "label": str})
    assert len(per_image) == 30 * 4 and per_image["agrees_with_baseline"].all()
    top5 = json.loads(per_image.loc[0, "top5"])
    assert len(top5) == 5 and top5[0][0] == per_image.loc[0, "top1"]
    assert json.loads((out / "comparison.json").read_text())[1]["variant"] == "tvm:cpu:O0"
    pairwise = pd.read_csv(out / "pairwise.csv")
    assert len(pairwise) == 16
    meta = json.loads((out / "run.json").read_text())
    assert meta["kind"] == "comparison" and meta["image_count"] == 30


def test_compare_over_rpc_equals_local(tmp_path, rpc_server):
    out = tmp_path / "rpc"
    proc = run_cli("compare", "--model", "digits", "--images", "digits:10", "--variants",
                   f"tvm:rpc://127.0.0.1:{rpc_server}", "--baseline", "tvm:cpu-generic", "--out", str(out),
                   "--no-report")
    assert proc.returncode == 0, proc.stderr
    row = pd.read_csv(out / "comparison.csv").iloc[1]
    assert row["max_abs_error"] == 0.0 and row["top1_agreement"] == 1.0


def _onnx_with_unsupported_op(path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 1, 1])
    graph = helper.make_graph([helper.make_node("Celu", ["x"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["y"])],
                              "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _onnx_with_flat_input(path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _bad_input_case(case, tmp_path):
    """Arguments of a compare call with one bad input, and the phrase the error must contain."""
    model, images, variants = "digits", "digits:4", "tvm:cpu"
    if case == "missing model file":
        model, phrase = str(tmp_path / "nope.onnx"), "does not exist"
    elif case == "corrupt model file":
        (tmp_path / "bad.onnx").write_bytes(b"\x00garbage\x01")
        model, phrase = str(tmp_path / "bad.onnx"), "not a valid ONNX model"
    elif case == "unsupported ONNX operator":
        _onnx_with_unsupported_op(tmp_path / "celu.onnx")
        model, phrase = str(tmp_path / "celu.onnx"), "Celu"
    elif case == "wrong input shape":
        _onnx_with_flat_input(tmp_path / "flat.onnx")
        model, phrase = str(tmp_path / "flat.onnx"), "needs a 4-d image batch"
    elif case == "unknown model":
        model, phrase = "vgg99", "not a known model"
    elif case == "unknown target":
        variants, phrase = "tvm:tpu", "unknown target 'tpu'"
    elif case == "unknown variant":
        variants, phrase = "tensorflow", "unknown variant 'tensorflow'"
    elif case == "unreachable RPC address":
        variants, phrase = f"tvm:rpc://127.0.0.1:{free_port()}", "not reachable"
    elif case == "empty image folder":
        (tmp_path / "empty").mkdir()
        images, phrase = str(tmp_path / "empty"), "holds no jpg or png images"
    elif case == "non-image file":
        (tmp_path / "imgs").mkdir()
        (tmp_path / "imgs" / "readme.txt").write_text("not an image")
        # skipped (tests/test_first_hour.py counts them): a folder of nothing else holds no images
        images, phrase = str(tmp_path / "imgs"), "holds no jpg or png images"
    elif case == "unknown schedule":
        variants, phrase = "torch,tvm:cpu:O2(schedule=fastest)", "schedule must be one of none, default, tuned"
    elif case == "unknown variant option":
        variants, phrase = "torch,tvm:cpu(threads=4)", "unknown option 'threads=4'"
    elif case == "cuda without a GPU":
        if tvm.cuda(0).exist:
            pytest.skip("this machine has a GPU")
        variants, phrase = "tvm:cuda", "no CUDA GPU"
    return ["compare", "--model", model, "--images", images, "--variants", variants, "--baseline", "torch"], phrase


BAD_INPUTS = ["missing model file", "corrupt model file", "unsupported ONNX operator", "wrong input shape",
              "unknown model", "unknown target", "unknown variant", "unreachable RPC address",
              "empty image folder", "non-image file", "unknown schedule", "unknown variant option",
              "cuda without a GPU"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, case):
    args, phrase = _bad_input_case(case, tmp_path)
    if "torch" in args and case in ("missing model file", "corrupt model file", "unsupported ONNX operator",
                                    "wrong input shape"):
        args[args.index("--baseline") + 1] = "onnxruntime"
    proc = run_cli(*args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("mutatenn: error:")]
    assert len(error_lines) == 1, proc.stderr
    assert phrase in error_lines[0]
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = run_cli("--debug", "compare", "--model", str(tmp_path / "nope.onnx"), "--images", "digits:2",
                   "--variants", "tvm:cpu", "--baseline", "onnxruntime", "--out", str(tmp_path / "o"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_existing_results_are_never_overwritten(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "comparison.csv").write_text("precious")
    proc = run_cli("compare", "--model", "digits", "--images", "digits:2", "--variants", "tvm:cpu",
                   "--baseline", "torch", "--out", str(out))
    assert proc.returncode == 2 and "already holds files" in proc.stderr
    assert (out / "comparison.csv").read_text() == "precious"


def test_latency_flags_agree_with_the_per_image_latencies(tmp_path):
    """Every opt level of one stack: a flag exactly where a higher level's per-image
    latencies are significantly slower than a lower level's (checked with scipy here)."""
    from scipy.stats import mannwhitneyu

    out = tmp_path / "levels"
    levels = [f"tvm:cpu:O{k}" for k in range(4)]
    proc = run_cli("compare", "--model", "digits", "--images", "digits:40", "--variants", ",".join(levels),
                   "--baseline", "torch", "--out", str(out), "--no-report")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "comparison.csv", keep_default_na=False).set_index("variant")
    per_image = pd.read_csv(out / "per_image.csv")
    latency = {v: per_image.loc[per_image["variant"] == v, "latency_ms"].to_numpy() for v in levels}
    assert all(len(x) == 40 and (x > 0).all() for x in latency.values())
    for v in levels:
        assert abs(np.median(latency[v]) - table.loc[v, "latency_ms_median"]) < 1e-3  # the same timings
        slower_than = [u for u in levels[: levels.index(v)] if np.median(latency[v]) > np.median(latency[u])
                       and mannwhitneyu(latency[v], latency[u], alternative="greater").pvalue < 0.05]
        assert bool(table.loc[v, "latency_flag"]) == bool(slower_than), (v, table.loc[v, "latency_flag"])
        if slower_than:
            assert table.loc[v, "latency_flag"].split(" (")[0] in [f"slower than {u}" for u in slower_than]
    assert table.loc["torch", "latency_flag"] == ""  # not a TVM variant: never compared by level


def test_slower_higher_level_is_flagged_with_its_ratio(digits_program):
    """The rule on real timings: the naive-loop build timed as 'O3' against the scheduled
    one as 'O0' (the naive loops are several times slower on any CPU)."""
    from mutatenn.execute import run_variant
    from mutatenn.runners import parse_variant
    from operators.latency import slower_at_higher_level

    batch = np.random.default_rng(0).standard_normal((24, *digits_program.input.shape[1:])).astype(np.float32)
    fast = run_variant(digits_program, parse_variant("tvm:cpu:O2"), batch).output.latencies
    slow = run_variant(digits_program, parse_variant("tvm:cpu:O2(schedule=none)"), batch).output.latencies
    flags = slower_at_higher_level([("O0", 0, fast), ("O3", 3, slow)])
    ratio = float(np.median(slow) / np.median(fast))
    assert ratio > 1.5
    assert list(flags) == ["O3"] and flags["O3"].startswith(f"slower than O0 ({ratio:.2f}x, p=")
    assert slower_at_higher_level([("O0", 0, slow), ("O3", 3, fast)]) == {}  # faster at the higher level
