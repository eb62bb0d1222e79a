"""Memory-safety verdicts (issue #12) on the real pipeline with the bundled digits CNN.

1. `mutatenn.bounds` asserts every buffer access in bounds before the buffers are
   flattened; a load under a guard (the padding of a convolution, a Select, an if) is
   checked only where the guard holds, so an in-bounds program runs unchanged.
2. A mutant that reads outside a buffer gets ``memory_error`` on a ``bounds_check = true``
   stack, with the same verdict and reason in separate processes, and counts in the score.
3. ``[run] rejudge_unstable = "bounds_check"`` rebuilds the pairs flagged unstable with
   checks: an out-of-bounds one becomes ``memory_error``, keeping its first verdict.
4. A build the compiler refuses is ``build_error``, outside the score's denominator; an
   internal error of MutateNN stops the run naming the job (``crashed`` is only a dead
   worker or a run that raised).

Mutants that may read out of bounds are built only with checks in this process (the
check fires before the load), or in worker processes.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tvm
import tvm_ffi
from conftest import ROOT, campaign_config, campaign_table, free_port, run_cli
from tvm import tirx
from tvm.script import tirx as T

import mutators
from mutatenn import bounds
from mutatenn.build import BuildOptions, parse_target, relax_pipeline
from mutatenn.config import parse_config
from mutatenn.errors import ConfigError
from mutators.base import lower

# `v_i2 < 9` -> `v_i2 <= 9` in the first convolution's padding: row 9 of the padded input
# reads row 8 of an 8-row input.
OUT_OF_BOUNDS = ("tir_lt_to_le", 0)
# `1 <= v_i2` -> `1 <= v_i2 - 1` there: one padded row more, nothing read outside.
IN_BOUNDS = ("tir_cond_rhs_minus1", 0)


def _build_prim_func(func):
    """One PrimFunc compiled alone (a legalised one is private: it gets a symbol here)."""
    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target={"kind": "llvm"})


def _conv_args(func, seed: int = 0):
    """Random inputs and a zero output for a PrimFunc's buffers (in parameter order)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for param in func.params:  # TVM 0.27: a buffer parameter is a Var with a shape (no buffer_map)
        arrays.append(rng.standard_normal([int(d) for d in param.shape]).astype(str(param.dtype)))
    arrays[-1][:] = 0
    return arrays


def _run_prim_func(lib, arrays):
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    lib["main"](*tensors)
    return tensors[-1].numpy()


def _asserts(node) -> list:
    found: list = []
    tvm_ffi.structural_walk(node, (tirx.AssertStmt, found.append))
    return [a for a in found if bounds.MARK in str(a.message_parts[0])]


def test_padded_conv_with_checks_raises_nothing_and_computes_the_same(digits_program):
    """digits' first convolution pads its input with if_then_else(1 <= h < 9 ..., x[h - 1], 0):
    the load of x is asserted only under that guard (row 0 would read x[-1])."""
    conv = lower(digits_program.mod)["conv2d"]
    checked = bounds.instrument_prim_func(conv, "conv2d")
    checks = _asserts(checked.body)
    guarded = [a for a in checks if "reads x[" in str(a.message_parts[0])]
    assert len(guarded) == 1 and isinstance(guarded[0].condition, tirx.Or), guarded  # not guard, or in bounds
    assert {"writes pad_temp[", "writes conv2d_nchw[", "reads pad_temp[", "reads B["} <= {
        m for a in checks for m in ("writes pad_temp[", "writes conv2d_nchw[", "reads pad_temp[", "reads B[")
        if m in str(a.message_parts[0])}
    arrays = _conv_args(conv)
    plain = _run_prim_func(_build_prim_func(conv), [a.copy() for a in arrays])
    with_checks = _run_prim_func(_build_prim_func(checked), [a.copy() for a in arrays])
    assert np.array_equal(plain, with_checks) and np.abs(plain).sum() > 0

    # The same convolution with the mutated guard: the check fires (before the load runs).
    mutant = mutators.make_mutant(digits_program.mod, *OUT_OF_BOUNDS, with_diff=False)
    lib = _build_prim_func(bounds.instrument_prim_func(mutant.mod["conv2d"], "conv2d"))
    with pytest.raises(IndexError, match=r"MutateNN bounds check: conv2d reads x\[.*outside its shape \(1, 1, 8, 8\)"):
        _run_prim_func(lib, [a.copy() for a in arrays])


# Row j + 1 of a (2, 8) buffer at column 7 is element [0, 8]: outside the declared extent
# of the last dimension, yet inside the allocation, so no test here reads real memory
# outside an array even when a guard is wrong.
@T.prim_func(s_tir=True)
def _guarded(A: T.Buffer((T.int64(2), T.int64(8)), "float32"), B: T.Buffer((T.int64(3), T.int64(8)), "float32")):
    T.func_attr({"tirx.noalias": True})
    for j in range(T.int64(8)):
        with T.sblock("select"):
            vj = T.axis.spatial(T.int64(8), j)
            B[0, vj] = T.Select(vj < T.int64(7), A[0, vj + T.int64(1)], T.float32(0))
        with T.sblock("else_branch"):
            vj = T.axis.spatial(T.int64(8), j)
            B[1, vj] = T.if_then_else(vj >= T.int64(7), T.float32(0), A[0, vj + T.int64(1)])
        with T.sblock("if_stmt"):
            vj = T.axis.spatial(T.int64(8), j)
            if vj < T.int64(7):
                B[2, vj] = A[0, vj + T.int64(1)]


@T.prim_func(s_tir=True)
def _unguarded(A: T.Buffer((T.int64(2), T.int64(8)), "float32"), B: T.Buffer((T.int64(3), T.int64(8)), "float32")):
    T.func_attr({"tirx.noalias": True})
    for j in range(T.int64(8)):
        with T.sblock("select"):
            vj = T.axis.spatial(T.int64(8), j)
            B[0, vj] = T.Select(vj < T.int64(8), A[0, vj + T.int64(1)], T.float32(0))


def test_select_else_branch_and_if_statement_guards():
    """Each guarded load is checked under its own guard (the else branch under the
    negation); without a guard that excludes column 7 the check fires."""
    arrays = [np.arange(16, dtype="float32").reshape(2, 8), np.zeros((3, 8), dtype="float32")]
    out = _run_prim_func(_build_prim_func(bounds.instrument_prim_func(_guarded, "guarded")), arrays)
    expected = np.append(np.arange(1, 8, dtype="float32"), 0)
    assert np.array_equal(out, np.stack([expected, expected, expected]))
    lib = _build_prim_func(bounds.instrument_prim_func(_unguarded, "unguarded"))
    with pytest.raises(IndexError, match=r"unguarded reads A\[0, vj \+ 1\] outside its shape \(2, 8\)"):
        _run_prim_func(lib, arrays)


def test_checked_loops_stay_serial_and_keys_say_so(digits_program):
    """The checks reach the fused, scheduled kernels; a failed check inside a parallel loop
    would be lost (TVM drops the closure's error), so no checked loop stays parallel or
    vectorized. The option is part of the build key and label; keys without it are unchanged."""
    target = parse_target("cpu")
    plain, checked = BuildOptions(), BuildOptions(bounds_check=True)
    assert checked.key() != plain.key() and "bounds" not in plain.key()
    assert checked.label() == "O2,bounds_check" and plain.label() == "O2"
    assert plain.with_overrides({"bounds_check": True}) == checked
    with tvm.transform.PassContext(opt_level=3), target.tvm_target():
        lowered = relax_pipeline(target, checked)(digits_program.mod)
        unchecked = relax_pipeline(target, plain)(digits_program.mod)
    prims = [f for f in lowered.functions.values() if isinstance(f, tirx.PrimFunc)]
    assert sum(len(_asserts(f.body)) for f in prims) >= 30
    fast = (tirx.ForKind.PARALLEL, tirx.ForKind.VECTORIZED)
    for func in prims:
        loops: list = []
        tvm_ffi.structural_walk(func.body, (tirx.For, loops.append))
        assert not any(loop.kind in fast and _asserts(loop.body) for loop in loops)
    loops = []
    for func in unchecked.functions.values():
        if isinstance(func, tirx.PrimFunc):
            tvm_ffi.structural_walk(func.body, (tirx.For, loops.append))
    assert any(loop.kind in fast for loop in loops)  # the unchecked build does parallelise


def test_original_with_bounds_checks_gives_identical_outputs(digits_program):
    from mutatenn.execute import cached_images, input_batch
    from mutatenn.runners import make_runner, parse_variant

    batch = input_batch(digits_program, cached_images("digits:20"))
    outputs = {}
    for checked in (False, True):
        variant = dataclasses.replace(parse_variant("tvm:cpu:O2"), options=BuildOptions(bounds_check=checked))
        runner = make_runner(variant, digits_program)
        runner.prepare()
        outputs[checked] = runner.run(batch, None).logits
    assert outputs[True].shape == (20, 10)
    assert np.array_equal(outputs[False], outputs[True])


def test_config_keys_are_checked():
    base = campaign_table(operators=["tir_lt_to_le"], stacks=[{"name": "s", "target": "cpu", "bounds_check": True}])
    config = parse_config(base)
    assert config.stacks[0].options.bounds_check and config.stacks[0].describe()["bounds_check"]
    with pytest.raises(ConfigError, match=r"stacks\[0\]\.bounds_check.*true or false"):
        parse_config({**base, "stacks": [{"target": "cpu", "bounds_check": "yes"}]})
    with pytest.raises(ConfigError, match=r"stacks\[0\]\.bounds_check.*CPU"):
        parse_config({**base, "stacks": [{"target": "cuda", "bounds_check": True}]})
    with pytest.raises(ConfigError, match=r"run\.rejudge_unstable.*repeats >= 2"):
        parse_config({**base, "run": {"rejudge_unstable": "bounds_check"}})
    with pytest.raises(ConfigError, match=r"run\.rejudge_unstable.*bounds_check"):
        parse_config({**base, "run": {"rejudge_unstable": "asan", "repeats": 2}})
    assert parse_config({**base, "run": {"rejudge_unstable": "bounds_check", "repeats": 2}}).rejudge_unstable


# The out-of-bounds mutant and the in-bounds padding mutant beside it, on 8 digits, one job.
BOTH_MUTANTS = {OUT_OF_BOUNDS[0]: {"positions": [OUT_OF_BOUNDS[1]]}, IN_BOUNDS[0]: {"positions": [IN_BOUNDS[1]]}}
RUN = {"jobs": 1, "timeout": 300}


def _campaign_process(folder: Path) -> subprocess.Popen:
    folder.mkdir(parents=True)
    campaign_config(folder / "c.toml", operators=BOTH_MUTANTS,
                    stacks=[{"name": "checked", "target": "cpu", "bounds_check": True}], run=RUN)
    return subprocess.Popen([sys.executable, "-m", "mutatenn.cli", "run", str(folder / "c.toml"), "--out",
                             str(folder / "run"), "--quiet", "--no-report"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_out_of_bounds_mutant_is_memory_error_in_three_processes(tmp_path):
    """Three campaigns in three fresh processes: the out-of-bounds mutant is memory_error
    each time with the same reason; the in-bounds padding mutant beside it is judged as usual."""
    procs = [_campaign_process(tmp_path / f"p{i}") for i in range(3)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    tables = [pd.read_csv(tmp_path / f"p{i}" / "run" / "verdicts.csv", keep_default_na=False) for i in range(3)]
    oob_id, ok_id = (f"{op}#{site}" for op, site in (OUT_OF_BOUNDS, IN_BOUNDS))
    first = tables[0].set_index("mutant_id")
    assert first.at[oob_id, "verdict"] == "memory_error"
    assert first.at[oob_id, "reason"].startswith("IndexError: MutateNN bounds check: fused_conv2d")
    assert "reads x[" in first.at[oob_id, "reason"]
    assert first.at[ok_id, "verdict"] in ("killed", "survived")
    for table in tables[1:]:
        assert table[["mutant_id", "verdict", "reason"]].equals(tables[0][["mutant_id", "verdict", "reason"]])
    scores = pd.read_csv(tmp_path / "p0" / "run" / "scores.csv")
    overall = scores[scores["group"] == "all"].iloc[0]
    assert overall["memory_error"] == 1 and overall["crashed"] == 0
    assert overall["score"] == round(100.0 * overall["killed"] / 2, 2)  # memory_error is in the denominator


def test_rejudge_unstable_rebuilds_flagged_pairs_with_bounds_checks(tmp_path):
    """Both mutants are flagged unstable (the test hook perturbs their second pass, so the
    flag does not depend on what memory held); the bounds-checked rebuild turns the one
    that reads outside its input into memory_error and leaves the other's verdict. A
    second run of the same folder rebuilds nothing and changes nothing."""
    oob_id, ok_id = (f"{op}#{site}" for op, site in (OUT_OF_BOUNDS, IN_BOUNDS))
    campaign_config(tmp_path / "c.toml", operators=BOTH_MUTANTS, stacks=[{"name": "plain", "target": "cpu"}],
                    run={**RUN, "repeats": 2, "rejudge_unstable": "bounds_check"})
    env = {"MUTATENN_TEST_FAULTS": json.dumps({"unstable": [oob_id, ok_id]})}
    args = ("run", str(tmp_path / "c.toml"), "--out", str(tmp_path / "run"), "--no-report")
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert "rejudging 2 unstable mutant x stack pair(s) with bounds checks: 2 builds" in result.stderr
    verdicts = pd.read_csv(tmp_path / "run" / "verdicts.csv", keep_default_na=False).set_index("mutant_id")
    oob, ok = verdicts.loc[oob_id], verdicts.loc[ok_id]
    assert oob["verdict"] == "memory_error" and str(oob["unstable"]) == "1"
    assert oob["reason"].startswith("IndexError: MutateNN bounds check: fused_conv2d")
    assert "(bounds-checked rebuild; first verdict " in oob["reason"]
    assert ok["verdict"] in ("killed", "survived")
    assert "bounds-checked rebuild: no access outside its buffers" in ok["reason"]
    builds = pd.read_csv(tmp_path / "run" / "builds.csv", keep_default_na=False)
    rebuilt = builds[builds["program"] == oob_id]
    assert sorted(rebuilt["status"]) == ["done", "memory_error"]  # the first build, and the checked one
    scores = pd.read_csv(tmp_path / "run" / "scores.csv").set_index("group").loc["all"]
    assert scores["memory_error"] == 1 and scores["unstable"] == 2

    again = run_cli(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert "rejudging" not in again.stderr and "resuming: 3 of 3 builds already done" in again.stderr
    after = pd.read_csv(tmp_path / "run" / "verdicts.csv", keep_default_na=False).set_index("mutant_id")
    assert after[["verdict", "reason"]].equals(verdicts[["verdict", "reason"]])

    # repro rebuilds a memory error the way it was found: with bounds checks.
    repro = run_cli("repro", str(tmp_path / "run"), oob_id)
    assert repro.returncode == 0, repro.stderr
    assert "memory_error" in repro.stdout and "MutateNN bounds check" in repro.stdout, repro.stdout


def _job(tmp_path, variant: str, operator: str, site: int, program_hash: str):
    from mutatenn.records import Job
    from mutatenn.runners import parse_variant, runner_ref

    return Job(key=f"{operator}-{site}-{variant.replace(':', '-').replace('/', '-')}", model="digits",
               pretrained="auto", preset=None, images="digits:4", variant=parse_variant(variant),
               runner=runner_ref("tvm"),
               operator=operator, site=site, program_hash=program_hash, log_path=str(tmp_path / "job.log"))


# TVM's CUDA lowering refuses a matmul whose accumulator is cast to float16 at each step
# (cross-thread reduction: "No matched reducer for the identity and the combiner"); the
# CUDA build needs no GPU. The LLVM build of the same mutant is fine.
REFUSED_ON_CUDA = ("tir_store_cast_float16", 23)


def test_a_build_the_compiler_refuses_is_build_error_outside_the_score(tmp_path, digits_program):
    from mutatenn.campaign import tables
    from mutatenn.campaign.job import run_job
    from mutatenn.campaign.judge import judge_failure
    from mutatenn.records import JobStatus, Verdict, VerdictRow

    mutant = mutators.make_mutant(digits_program.mod, *REFUSED_ON_CUDA, with_diff=False)
    assert mutant.site.startswith("matmul / block matmul: store")
    result = run_job(_job(tmp_path, "tvm:cuda:O2", *REFUSED_ON_CUDA, mutant.hash))
    assert result.status is JobStatus.BUILD_ERROR, result.reason
    assert "No matched reducer" in result.reason

    info = {"key": "k", "status": result.status.value, "reason": result.reason, "build_s": result.build_s,
            "run_s": result.run_s, "log_tail": result.log_tail}
    refused = judge_failure((mutant.id, "s"), info)
    assert refused.verdict is Verdict.BUILD_ERROR and "No matched reducer" in refused.reason
    rows = [refused, VerdictRow("a#0", "s", Verdict.KILLED), VerdictRow("b#0", "s", Verdict.SURVIVED),
            VerdictRow("c#0", "s", Verdict.MEMORY_ERROR, "IndexError: MutateNN bounds check: …")]
    mutants = [{"id": r.mutant_id, "operator": "op", "level": "tir", "site": "", "ordinal": i}
               for i, r in enumerate(rows)]
    scores = tables.score_table(tables.verdict_table(rows, mutants, ["s"]), ["s"])
    overall = scores[scores["group"] == "all"].iloc[0]
    assert (overall["build_error"], overall["memory_error"], overall["killed"]) == (1, 1, 1)
    assert overall["score"] == round(100 / 3, 2)  # killed / (killed + survived + memory_error)


def test_a_run_that_raises_is_crashed_and_an_internal_error_stops_the_campaign(tmp_path, digits_program):
    """The same mutant on an RPC target nobody serves: it builds, then its run raises
    (crashed). Rebuilt with another hash than the plan's: MutateNN's own error, which
    stops the campaign naming the job instead of becoming a verdict."""
    from mutatenn.campaign.engine import check_internal
    from mutatenn.campaign.job import run_job
    from mutatenn.campaign.judge import judge_failure
    from mutatenn.campaign.plan import Artifact
    from mutatenn.errors import CampaignError
    from mutatenn.records import JobStatus

    mutant = mutators.make_mutant(digits_program.mod, *IN_BOUNDS, with_diff=False)
    result = run_job(_job(tmp_path, f"tvm:rpc://127.0.0.1:{free_port()}/cpu-generic:O2", *IN_BOUNDS, mutant.hash))
    assert result.status is JobStatus.CRASHED and "not reachable" in result.reason, result.reason

    wrong = run_job(_job(tmp_path, "tvm:cpu:O2", *IN_BOUNDS, "0" * 16))
    assert wrong.status is JobStatus.INTERNAL_ERROR and "planned 0000000000000000" in wrong.reason
    parse = parse_config(campaign_table(images="digits:4", operators=[IN_BOUNDS[0]], stacks=[{"name": "s", "target": "cpu"}]))
    artifact = Artifact("KEY", parse.stacks[0], parse.stacks[0].options, "0" * 16, *IN_BOUNDS,
                        pairs=[(mutant.id, "s")])
    with pytest.raises(CampaignError, match=r"internal error in job KEY \(tir_cond_rhs_minus1#0 on stack 's'"):
        check_internal("KEY", artifact, wrong, tmp_path)
    with pytest.raises(CampaignError, match="internal error in job k"):
        judge_failure((mutant.id, "s"), {"key": "k", "status": wrong.status.value, "reason": wrong.reason})
