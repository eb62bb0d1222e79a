"""Trivial compiler equivalence: a TIR mutant whose changed kernels compile to the
original's machine code is `equivalent` without running. Planted case: `tir_store_add1`
on a store of batch_norm's running-mean update (dead in inference: LLVM drops it), next to
a store whose change reaches the code."""
from __future__ import annotations

import pandas as pd
import pytest
from conftest import campaign_config

from mutatenn.build.equivalence import base_name, normalized_ir
from mutatenn.cli import main

CAMPAIGN = {"images": "digits:6", "stacks": [{"name": "cpu-O2", "target": "cpu", "opt_level": 2}],
            "run": {"timeout": 120}}
DEAD_STORE, LIVE_STORE = "tir_store_add1#14", "tir_store_add1#13"


def test_llvm_modules_are_compared_without_debug_metadata_comments_and_string_lengths():
    a = ('; ModuleID = \'x\'\n@.s = private constant [5 x i8] c"f_m1\\00"\n'
         'define void @f() !dbg !4 {\n  store float 1.0, ptr %p, align 4, !dbg !9 ; a comment\n}\n!4 = !{}\n')
    b = '@.s = private constant [3 x i8] c"f_m1\\00"\ndefine void @f() !dbg !7 {\n  store float 1.0, ptr %p, align 4\n}\n'
    assert normalized_ir(a) == normalized_ir(b)
    assert normalized_ir(a) != normalized_ir(a.replace("1.0", "2.0"))
    assert base_name("fused_relu_m1", {"fused_relu": 0}) == "fused_relu"
    assert base_name("fused_tanh", {"fused_relu": 0}) is None


def _run(tmp_path, positions: list[int], *extra: str) -> pd.DataFrame:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = campaign_config(tmp_path / "campaign.toml", operators={"tir_store_add1": {"positions": positions}},
                             **CAMPAIGN)
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet", "--no-report", *extra]) == 0
    return pd.read_csv(tmp_path / "run" / "verdicts.csv", dtype=str, keep_default_na=False).set_index("mutant_id")


@pytest.mark.slow
def test_a_dead_store_mutant_is_equivalent_without_running(tmp_path):
    verdicts = _run(tmp_path, [13, 14])
    dead = verdicts.loc[DEAD_STORE]
    assert dead["verdict"] == "equivalent"
    assert dead["reason"] == ("compiles to the original's machine code "
                              "(kernels fused_batch_norm_add1_relu, fused_batch_norm_relu)")
    assert float(dead["build_s"]) > 0 and float(dead["run_s"]) == 0  # built, never run
    assert verdicts.loc[LIVE_STORE, "verdict"] in ("killed", "survived")  # its change reaches the code: run
    scores = pd.read_csv(tmp_path / "run" / "scores.csv")
    row = scores[(scores["group"] == "all")].iloc[0]
    assert (row["killed"] + row["survived"], row["equivalent"]) == (1, 1)  # counted apart


@pytest.mark.slow
def test_full_builds_and_the_build_cache_find_it_too(tmp_path):
    """Without shared builds the changed kernels are compiled once more for the comparison;
    a build cache keeps the finding beside the cached build (verdicts never depend on it)."""
    cache = tmp_path / "cache"
    first = _run(tmp_path / "a", [14], "--no-share-builds", "--build-cache", str(cache))
    again = _run(tmp_path / "b", [14], "--no-share-builds", "--build-cache", str(cache))
    for verdicts in (first, again):
        assert verdicts.loc[DEAD_STORE, "verdict"] == "equivalent"
        assert verdicts.loc[DEAD_STORE, "reason"].startswith("compiles to the original's machine code")
    assert list(cache.glob("*.equivalent"))
    builds = pd.read_csv(tmp_path / "b" / "run" / "builds.csv")
    assert builds["cached"].all()
