"""Uninitialised reads made deterministic (issue #23) on the real pipeline with the digits CNN.

1. `mutatenn.poison` fills every buffer a kernel writes with poison and checks its
   outputs at its exit: an element left unwritten raises a message naming the kernel and
   the buffer, the same in every build; a NaN the program computes is no poison.
2. A loop-bound mutant on a ``bounds_check = true`` stack is ``uninitialized_read``, at
   run time or, for a constant kernel FoldConstant evaluates, at build time.
3. A correct program computes the same with poison as without.
4. A campaign with loop-bound and condition operators on a checked stack gives the same
   verdict and reason on every pair in two runs.

Every mutant here is built with checks, so no unwritten element is ever read.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
import tvm
from conftest import campaign_config, run_cli
from tvm.script import tirx as T

import mutators
from mutatenn import poison
from mutatenn.build import BuildOptions
from mutatenn.campaign.job import BUILD, RUN, classify_failure
from mutatenn.records import JobStatus
from runfolder.verdicts import CHECKED, VERDICT_INFO, Verdict

# `for ax3 in range(8)` -> `range(7)` in the first convolution's bias add: column 7 of
# T_add_intermediate is never written (checked at run time).
RUN_TIME = ("tir_loop_extent_minus1", 3)
# The transpose of the first dense layer's weight starts at row 1: a constant kernel that
# FoldConstant evaluates at build time (the verdict that changed between runs before).
BUILD_TIME = ("tir_loop_min_plus1", 59)


@T.prim_func(s_tir=True)
def _skips_first(A: T.Buffer((T.int64(8),), "float32"), B: T.Buffer((T.int64(8),), "float32")):
    T.func_attr({"tirx.noalias": True})
    for i in range(T.int64(1), T.int64(8)):
        with T.sblock("copy"):
            vi = T.axis.spatial(T.int64(8), i)
            B[vi] = A[vi]


@T.prim_func(s_tir=True)
def _copies_all(A: T.Buffer((T.int64(8),), "float32"), B: T.Buffer((T.int64(8),), "float32")):
    T.func_attr({"tirx.noalias": True})
    for i in range(T.int64(8)):
        with T.sblock("copy"):
            vi = T.axis.spatial(T.int64(8), i)
            B[vi] = A[vi]


@T.prim_func(s_tir=True)
def _scratch_skipped(A: T.Buffer((T.int64(8),), "float32"), B: T.Buffer((T.int64(8),), "float32")):
    T.func_attr({"tirx.noalias": True})
    S = T.sblock_alloc_buffer((T.int64(8),))
    for i in range(T.int64(1), T.int64(8)):
        with T.sblock("fill"):
            vi = T.axis.spatial(T.int64(8), i)
            S[vi] = A[vi]
    for i in range(T.int64(8)):
        with T.sblock("use"):
            vi = T.axis.spatial(T.int64(8), i)
            B[vi] = S[vi] * T.float32(2)


def _run(func, name: str, a: np.ndarray) -> np.ndarray:
    lib = tvm.compile(tvm.IRModule({"main": poison.poison_prim_func(func, name).with_attr("global_symbol", "main")}),
                      target={"kind": "llvm"})
    out = tvm.runtime.tensor(np.zeros(8, "float32"))
    lib["main"](tvm.runtime.tensor(a), out)
    return out.numpy()


def test_unwritten_output_element_raises_and_a_computed_nan_is_no_poison():
    """Skipping B[0] raises at the kernel's exit, naming kernel and buffer; a NaN in the
    input copied through is the program's own value, not poison; an unwritten scratch
    element read into the output carries the poison's payload there and is reported."""
    a = np.arange(8, dtype="float32")
    a[3] = np.nan
    with pytest.raises(RuntimeError, match=rf"^MutateNN uninitialized read: kernel skips buffer B: {re.escape(poison.UNWRITTEN)}$"):
        _run(_skips_first, "skips", a)
    out = _run(_copies_all, "copies", a)
    assert np.isnan(out[3]) and np.array_equal(np.delete(out, 3), np.delete(a, 3))
    with pytest.raises(RuntimeError, match=rf"kernel scratch buffer B: {re.escape(poison.UNWRITTEN)}$"):
        _run(_scratch_skipped, "scratch", a)


def _checked_runner(program, mutant, checked: bool = True):
    from mutatenn.runners import make_runner, parse_variant

    variant = dataclasses.replace(parse_variant("tvm:cpu:O2"), options=BuildOptions(bounds_check=checked))
    return make_runner(variant, program, mod=mutant.mod if mutant is not None else None)


def _failure(program, batch, mutant) -> tuple[JobStatus, str]:
    """Build and run one mutant with checks, as a job does: (status, reason) of its failure."""
    runner = _checked_runner(program, mutant)
    stage = BUILD
    try:
        runner.prepare()
        stage = RUN
        runner.run(batch, None)
    except Exception as err:  # the check's error, classified as a campaign job classifies it
        return classify_failure(stage, err)
    raise AssertionError("no check fired")


@pytest.mark.slow
def test_loop_bound_mutants_are_uninitialized_reads_the_same_in_two_builds(digits_program):
    from mutatenn.execute import cached_images, input_batch

    batch = input_batch(digits_program, cached_images("digits:8"))
    for (operator, site), kernel, buffer, when in ((RUN_TIME, "fused_conv2d_add", "T_add_intermediate", ""),
                                                    (BUILD_TIME, "transpose", "T_transpose", poison.FOLDING)):
        mutant = mutators.make_mutant(digits_program.mod, operator, site, with_diff=False)
        first, second = (_failure(digits_program, batch, mutant) for _ in range(2))
        assert first == second
        assert first == (JobStatus.UNINITIALIZED_READ,
                         f"RuntimeError: {poison.MARK}: kernel {kernel}{when} buffer {buffer}: {poison.UNWRITTEN}")


def test_checked_original_computes_what_the_unchecked_build_does(digits_program):
    """Poison never fires on a correct program, and the fill is overwritten everywhere."""
    from mutatenn.execute import cached_images, input_batch

    batch = input_batch(digits_program, cached_images("digits:8"))
    outputs = []
    for checked in (False, True):
        runner = _checked_runner(digits_program, None, checked)
        runner.prepare()
        outputs.append(runner.run(batch, None).logits)
    assert outputs[0].shape == (8, 10) and np.isfinite(outputs[1]).all()
    assert np.allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


def test_the_verdict_is_one_table_line():
    """Counted like memory_error: in the score, a detail section, repro, the progress line,
    an error in the exports; a checked rebuild takes it."""
    row, memory = VERDICT_INFO[Verdict.UNINITIALIZED_READ], VERDICT_INFO[Verdict.MEMORY_ERROR]
    same = ("scored", "detail", "repro", "localize", "progress", "checked", "mutation_testing", "junit")
    assert all(getattr(row, f) == getattr(memory, f) for f in same)
    assert row.colour != memory.colour and set(CHECKED) == {"memory_error", "uninitialized_read"}
    assert JobStatus(Verdict.UNINITIALIZED_READ.value) is JobStatus.UNINITIALIZED_READ


# Loop-bound mutants (the two above and their neighbours) and condition mutants of the
# first convolution's padding, on 8 digits.
OPERATORS = {"tir_loop_min_plus1": {"positions": [BUILD_TIME[1], 0]},
             "tir_loop_extent_minus1": {"positions": [RUN_TIME[1], 0]},
             "tir_cond_rhs_plus1": {"positions": [0]}, "tir_lt_to_le": {"positions": [0]}}


@pytest.mark.slow
def test_a_checked_campaign_gives_identical_verdicts_in_two_runs(tmp_path):
    tables = []
    for number in (1, 2):
        config = campaign_config(tmp_path / f"c{number}.toml", operators=OPERATORS,
                                 stacks=[{"name": "checked", "target": "cpu", "bounds_check": True}],
                                 run={"jobs": 1, "timeout": 300})
        result = run_cli("run", str(config), "--out", str(tmp_path / f"run{number}"), "--quiet", "--no-report")
        assert result.returncode == 0, result.stderr
        tables.append(pd.read_csv(tmp_path / f"run{number}" / "verdicts.csv", keep_default_na=False))
    columns = ["mutant_id", "stack", "verdict", "reason"]
    assert len(tables[0]) == 6
    assert tables[0][columns].equals(tables[1][columns])
    verdicts = tables[0].set_index("mutant_id")
    for operator, site in (RUN_TIME, BUILD_TIME):
        assert verdicts.at[f"{operator}#{site}", "verdict"] == "uninitialized_read"
        assert verdicts.at[f"{operator}#{site}", "reason"].startswith(f"RuntimeError: {poison.MARK}: kernel ")
    scores = pd.read_csv(tmp_path / "run1" / "scores.csv").set_index("group").loc["all"]
    assert scores["uninitialized_read"] == (verdicts["verdict"] == "uninitialized_read").sum()


@pytest.mark.slow
def test_rejudge_unstable_finds_the_uninitialized_read_and_repro_sees_it_again(tmp_path):
    """On an unchecked stack the loop-bound mutant is flagged unstable (the test hook
    perturbs its second pass, so the flag does not depend on what memory held); its
    bounds-checked rebuild hits the poison check, keeping the first verdict in the reason;
    repro rebuilds it with checks and sees the same."""
    import json

    mutant_id = "{}#{}".format(*RUN_TIME)
    campaign_config(tmp_path / "c.toml", operators={RUN_TIME[0]: {"positions": [RUN_TIME[1]]}},
                    stacks=[{"name": "plain", "target": "cpu"}],
                    run={"jobs": 1, "timeout": 300, "repeats": 2, "rejudge_unstable": "bounds_check"})
    env = {"MUTATENN_TEST_FAULTS": json.dumps({"unstable": [mutant_id]})}
    result = run_cli("run", str(tmp_path / "c.toml"), "--out", str(tmp_path / "run"), "--no-report", env=env)
    assert result.returncode == 0, result.stderr
    row = pd.read_csv(tmp_path / "run" / "verdicts.csv", keep_default_na=False).set_index("mutant_id").loc[mutant_id]
    assert row["verdict"] == "uninitialized_read" and str(row["unstable"]) == "1"
    assert row["reason"].startswith(f"RuntimeError: {poison.MARK}: kernel fused_conv2d_add buffer T_add_intermediate")
    assert "(bounds-checked rebuild; first verdict " in row["reason"]
    repro = run_cli("repro", str(tmp_path / "run"), mutant_id)
    assert repro.returncode == 0, repro.stderr
    assert "uninitialized_read" in repro.stdout and poison.MARK in repro.stdout, repro.stdout
