"""TIR mutation operators on a tiny CNN and on a small module with every comparison kind.

Mutants are built and run in a child process (this file run as a script): a mutated
condition can read out of bounds and crash the process that runs it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tvm
import tvm_ffi

from mutators import tir
from mutators.base import EQUIVALENT, PENDING, lower
from tests._models import conv_pool_fc_module

ROOT = Path(__file__).resolve().parents[1]


def tiny_module() -> tvm.IRModule:
    return conv_pool_fc_module()


def compare_module() -> tvm.IRModule:
    """One PrimFunc whose conditions use >, >=, == and != (the CNN has only < and <=): the
    operators' own example program."""
    from mutators.examples import PROGRAMS

    return PROGRAMS["compare"]()


MODULES = {"tiny": tiny_module, "compare": compare_module}


def module_input(name: str) -> np.ndarray:
    if name == "tiny":
        return np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype("float32")
    # values on the thresholds, so that every swap and shift changes some output
    return np.array([0.0, 0.25, 0.5, 0.75, 1.0, 0.25, 0.5, 0.125], dtype="float32")


def build_and_run(mod: tvm.IRModule, x: np.ndarray) -> np.ndarray:
    target = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64"})
    executable = tvm.compile(mod, target=target,
                             relax_pipeline=tvm.relax.backend.cpu_generic.get_default_pipeline(target))
    vm = tvm.relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x))
    if not hasattr(out, "numpy"):
        out = out[0]
    return out.numpy()


def operator(name: str) -> tir.TirOperator:
    return next(op for op in tir.OPERATORS if op.name == name)


# ---------------------------------------------------------------- the child process

def child_main(request: dict) -> None:
    """Build and run the requested mutants, one JSON line each, flushed as it goes."""
    mod = MODULES[request["module"]]()
    x = module_input(request["module"])
    lowered = lower(mod)
    reference = build_and_run(mod, x)
    for name, index in request["mutants"]:
        op = operator(name)
        result = op.mutate(lowered, op.sites(mod)[index], {})
        line = {"op": name, "site": index, "status": result.status, "reason": result.reason}
        if result.status == PENDING:
            out = build_and_run(result.mod, x)
            line["changed"] = not np.array_equal(out, reference, equal_nan=True)
        print(json.dumps(line), flush=True)


def run_in_children(module: str, mutants: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """Results per mutant; one that kills its child is recorded as crashed."""
    results: dict[tuple[str, int], dict] = {}
    todo = list(mutants)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    while todo:
        request = json.dumps({"module": module, "mutants": todo})
        proc = subprocess.run([sys.executable, __file__, request], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                item = json.loads(line)
                results[(item["op"], item["site"])] = item
        todo = [m for m in todo if m not in results]
        if todo:
            assert proc.returncode != 0, proc.stderr[-2000:]
            results[todo[0]] = {"status": "crashed", "returncode": proc.returncode, "stderr": proc.stderr[-4000:]}
            todo = todo[1:]
    return results


# ---------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def modules():
    return {name: make() for name, make in MODULES.items()}


def test_operator_contract():
    names = [op.name for op in tir.OPERATORS]
    assert len(names) == len(set(names))
    for op in tir.OPERATORS:
        assert re.fullmatch(r"tir_[a-z0-9_]+", op.name)
        assert op.level == "tir"
        assert op.doc and "\n" not in op.doc


def test_site_counts_on_tiny_cnn(modules):
    counts = {op.name: len(op.sites(modules["tiny"])) for op in tir.OPERATORS}
    # conv2d padding: 1 <= h, h < 9, 1 <= w, w < 9; 14 numeric stores; 42 loops (30 longer than 1)
    assert counts["tir_lt_to_le"] == counts["tir_le_to_lt"] == counts["tir_lt_to_gt"] == 2
    assert counts["tir_cond_rhs_plus1"] == counts["tir_cond_rhs_minus1"] == 4
    assert counts["tir_gt_to_ge"] == counts["tir_eq_to_ne"] == 0
    assert all(counts[f"tir_store_cast_{d}"] == 14 for d in ("float16", "bfloat16", "int8", "int16", "int32"))
    assert counts["tir_store_add1"] == counts["tir_store_sub1"] == counts["tir_store_scale2"] == 14
    assert counts["tir_loop_extent_minus1"] == 42
    assert counts["tir_loop_min_plus1"] == 30
    assert all(counts[f"tir_{a}_to_{b}"] == 1 for a, b in
               [("gt", "ge"), ("ge", "gt"), ("gt", "lt"), ("eq", "ne"), ("ne", "eq")]
               for counts in [{op.name: len(op.sites(modules["compare"])) for op in tir.OPERATORS}])


# Sites whose mutant is claimed equivalent, with the start of the site's description; every
# other site of both modules is PENDING (no rewrite here is ill-formed: none is NON_VIABLE).
ZERO_STORES = {3: "conv2d / block conv2d_nchw: init store", 5: "matmul / block matmul: init store",
               13: "zeros / block T_full: store"}  # each stores the constant 0.0
POOL_INIT = {7: "max_pool2d / block pool_max: init store"}  # stores -FLT_MAX; -FLT_MAX +- 1 rounds back
EXPECTED_EQUIVALENT = {
    "tiny": {**{f"tir_store_cast_{d}": ZERO_STORES for d in ("float16", "bfloat16", "int8", "int16", "int32")},
             "tir_store_scale2": ZERO_STORES, "tir_store_add1": POOL_INIT, "tir_store_sub1": POOL_INIT},
    "compare": {},
}


def expected_reason(op_name: str, func_name: str) -> str:
    if op_name.startswith("tir_store_cast_"):
        return f"the stored constant 0.0 survives the round trip through {op_name.rsplit('_', 1)[1]}"
    return f"PrimFunc {func_name} simplifies to the original"


@pytest.mark.parametrize("module", list(MODULES))
def test_every_site_mutates_exactly_its_primfunc(modules, module):
    mod = modules[module]
    before = tvm_ffi.structural_hash(mod)
    lowered = lower(mod)
    memo: dict = {}
    hashes = set()
    equivalent: dict = {}
    for op in [op for op in tir.OPERATORS if op.by_default]:  # parameterised forms repeat these at their defaults
        sites = op.sites(mod)
        again = op.sites(mod)
        assert [(s.index, s.description, s.key) for s in sites] == [(s.index, s.description, s.key) for s in again]
        for site in sites:
            assert site.key[0] in site.description
            result = op.mutate(lowered, site, memo)
            expected = EXPECTED_EQUIVALENT[module].get(op.name, {})
            name = site.key[0]
            if site.index in expected:
                assert site.description.startswith(expected[site.index]), (op.name, site.description)
                assert result.status == EQUIVALENT, (op.name, site.description, result.reason)
                assert result.reason == expected_reason(op.name, name)
                equivalent.setdefault(op.name, set()).add(site.index)
            else:
                assert result.status == PENDING, (op.name, site.description, result.status, result.reason)
                assert result.reason == ""
            assert result.mod is not None and len(result.hash) == 16
            assert not tvm_ffi.structural_equal(result.mod[name], lowered[name]), site.description
            others = [gv.name_hint for gv in lowered.get_global_vars() if gv.name_hint != name]
            assert all(result.mod[o].same_as(lowered[o]) for o in others)
            assert result.hash not in hashes
            hashes.add(result.hash)
    assert equivalent == {k: set(v) for k, v in EXPECTED_EQUIVALENT[module].items()}
    assert tvm_ffi.structural_hash(mod) == before


def test_apply_agrees_with_the_fast_path(modules):
    mod = modules["tiny"]
    lowered = lower(mod)
    before = tvm_ffi.structural_hash(mod)
    for op in tir.OPERATORS:
        sites = op.sites(mod)
        if not sites:
            continue
        site = sites[len(sites) // 2]
        mutated = op.apply(mod, site)
        assert tvm_ffi.structural_equal(mutated, op.mutate(lowered, site, {}).mod)
        assert "+++ mutant" in op.diff(mod, mutated, site)
    assert tvm_ffi.structural_hash(mod) == before


def test_equivalence_is_claimed_only_when_shown(modules):
    mod = modules["tiny"]
    lowered = lower(mod)
    scale = operator("tir_store_scale2")
    init = next(s for s in scale.sites(mod) if "conv2d_nchw: init store" in s.description)
    result = scale.mutate(lowered, init, {})
    assert result.status == EQUIVALENT and "simplifies" in result.reason  # 0 * 2 == 0
    # the simplifier folds the bfloat16 round trip of -FLT_MAX to itself; it is -inf
    bf16 = operator("tir_store_cast_bfloat16")
    pool_init = next(s for s in bf16.sites(mod) if "pool_max: init store" in s.description)
    assert bf16.mutate(lowered, pool_init, {}).status == PENDING


def _first_pending(mod, op) -> int | None:
    lowered = lower(mod)
    for site in op.sites(mod):
        if op.mutate(lowered, site, {}).status == PENDING:
            return site.index
    return None


CONDITION_OPERATORS = [op for op in tir.OPERATORS if isinstance(op, tir._ConditionOperator)]
HEAP_CORRUPTION = re.compile(r"corrupted|invalid pointer|double free|free\(\)")
BOUNDS_CHECK = re.compile(r"IndexError|out[ -]of[ -]bounds")


def died_of_out_of_bounds_access(returncode: int, stderr: str) -> bool:
    """How a process dies of an out-of-bounds access: a memory fault, an abort on a heap the
    access corrupted (glibc says so), or a bounds check's error."""
    if returncode in (-signal.SIGSEGV, -signal.SIGBUS):
        return True
    if returncode == -signal.SIGABRT:
        return bool(HEAP_CORRUPTION.search(stderr))
    return bool(BOUNDS_CHECK.search(stderr))


def test_store_and_loop_mutants_build_run_and_change_the_output(modules):
    """They stay inside their buffers: none may crash, and each changes the CNN's output."""
    chosen = []
    for op in tir.OPERATORS:
        if op in CONDITION_OPERATORS:
            continue
        index = _first_pending(modules["tiny"], op)
        assert index is not None, op.name
        chosen.append((op.name, index))
    results = run_in_children("tiny", chosen)
    for key in chosen:
        item = results[key]
        assert item["status"] == PENDING, (key, item)
        assert item["changed"], key


def test_condition_mutants_change_the_output_or_fault_on_memory(modules):
    """Every site of every condition operator is built and run. A mutated padding condition
    may read outside the input: such a mutant may kill its process, but only the way an
    out-of-bounds access does (a memory fault). Any other failure, or an unchanged output,
    fails the test. The "compare" module's conditions guard no load, so nothing there may crash."""
    changed_ops: dict[str, set] = {}
    for module in MODULES:
        mutants = [(op.name, site.index) for op in CONDITION_OPERATORS for site in op.sites(modules[module])]
        results = run_in_children(module, mutants)
        for key in mutants:
            item = results[key]
            if item["status"] == "crashed":
                assert module == "tiny", (module, key, item)
                assert died_of_out_of_bounds_access(item["returncode"], item["stderr"]), (
                    key, item["returncode"], item["stderr"])
                continue
            assert item["status"] == PENDING, (module, key, item)
            assert item["changed"], f"{module}: {key} left the output unchanged"
            changed_ops.setdefault(key[0], set()).add(module)
    # Each condition operator is shown to change an output somewhere (the "compare" module
    # reads nothing out of bounds, so its results are deterministic).
    assert set(changed_ops) == {op.name for op in CONDITION_OPERATORS}
    assert all(changed_ops[op.name] >= {"compare"} for op in CONDITION_OPERATORS if op.sites(modules["compare"]))


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
