"""Weight operators on a tiny real CNN: values changed as described, mutants built and
run, equivalence on unchanged values, and mutants rebuilt identically in another process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tvm_ffi

from mutators import EQUIVALENT, PENDING, Selection, catalogue, enumerate_mutants, make_mutant, weight
from mutators.base import relax_program_hash
from tests._models import build_and_run, tiny_input, tiny_module

ROOT = Path(__file__).resolve().parents[1]
# 10 float constants: conv weight and bias, batch_norm gamma/beta/mean/var, two linear
# weights and biases; 3 of them (conv and linear weights) have an output channel.
EXPECTED_SITES = {"fuzz_weight_gaussian": 10, "shuffle_weight": 10, "block_neuron_effect": 3,
                  "invert_neuron_activation": 3, "drop_weight_precision": 10}


@pytest.fixture(scope="module")
def mutants(tiny_mod):
    before = tvm_ffi.structural_hash(tiny_mod)
    out = enumerate_mutants(tiny_mod, levels=["weight"])
    assert tvm_ffi.structural_hash(tiny_mod) == before
    return out


def _constant(m):
    """The mutated constant's old and new values."""
    op = next(op for op in weight.OPERATORS if op.name == m.operator)
    site = op.sites(tiny_module())[m.site_index]
    old = site.key.const.value.numpy()
    new = [c for c in weight.weight_sites(m.mod) if c.number == site.key.number][0].const.value.numpy()
    return site, old, new


def test_catalogue_and_site_counts(mutants):
    names = [op.name for op in catalogue()]
    assert len(names) == len(set(names))
    assert set(EXPECTED_SITES) <= {op.name for op in weight.OPERATORS}  # an added operator: its own tests
    assert all(op.level == "weight" and op.doc for op in weight.OPERATORS)
    counts = {name: sum(m.operator == name for m in mutants) for name in EXPECTED_SITES}
    assert counts == EXPECTED_SITES


def test_site_descriptions_name_the_consumer(mutants):
    sites = {m.id: m.site for m in mutants}
    assert sites["fuzz_weight_gaussian#0"] == (
        "constant #1 of 10 [4,3,3,3] float32: weight of conv2d #1 of 1 (lv: [1,3,8,8] float32 -> [1,4,8,8] float32)")
    assert sites["fuzz_weight_gaussian#2"].startswith("constant #3 of 10 [4] float32: gamma of batch_norm #1 of 1")
    assert "weight of matmul #1 of 2" in sites["block_neuron_effect#1"] and "via permute_dims" in sites[
        "block_neuron_effect#1"]
    assert sites["block_neuron_effect#1"].endswith("of 8 (axis 0)")


def test_unchanged_values_are_equivalent_with_the_original_hash(tiny_mod, mutants):
    by_id = {m.id: m for m in mutants}
    original = relax_program_hash(tiny_mod)
    # The batch_norm scale is all ones: shuffling or rounding it through float16 changes nothing.
    for mid in ("shuffle_weight#2", "drop_weight_precision#2"):
        assert by_id[mid].status == EQUIVALENT and by_id[mid].hash == original
        assert "equal the original" in by_id[mid].reason
    pending = [m for m in mutants if m.status == PENDING]
    assert len(pending) == len(mutants) - 2
    assert len({m.hash for m in pending}) == len(pending) and original not in {m.hash for m in pending}


@pytest.mark.parametrize("name", list(EXPECTED_SITES))
def test_each_operator_builds_runs_and_changes_the_output(name, tiny_mod, tiny_output, mutants):
    before = tvm_ffi.structural_hash(tiny_mod)
    values_before = [c.const.value.numpy().copy() for c in weight.weight_sites(tiny_mod)]
    # The first linear weight: every operator has this site and it feeds the output.
    m = next(m for m in mutants if m.operator == name and "matmul #1 of 2" in m.site)
    out = build_and_run(m.mod, tiny_input())
    assert not np.allclose(out, tiny_output, rtol=1e-6, atol=1e-7), f"{m.id} left the output"
    assert tvm_ffi.structural_hash(tiny_mod) == before
    for c, v in zip(weight.weight_sites(tiny_mod), values_before):
        assert np.array_equal(c.const.value.numpy(), v)


def test_values_change_as_described(mutants):
    by_op = {}
    for m in mutants:
        if m.status == PENDING and "matmul #1 of 2" in m.site:
            by_op[m.operator] = m
    site, old, new = _constant(by_op["block_neuron_effect"])
    channel = int(site.description.split("output channel ")[1].split()[0])
    assert np.all(new[channel] == 0) and np.array_equal(np.delete(new, channel, 0), np.delete(old, channel, 0))
    site, old, new = _constant(by_op["invert_neuron_activation"])
    channel = int(site.description.split("output channel ")[1].split()[0])
    assert np.array_equal(new[channel], -old[channel])
    assert np.array_equal(np.delete(new, channel, 0), np.delete(old, channel, 0))
    _, old, new = _constant(by_op["shuffle_weight"])
    assert not np.array_equal(new, old) and np.array_equal(np.sort(new, axis=None), np.sort(old, axis=None))
    _, old, new = _constant(by_op["drop_weight_precision"])
    assert np.array_equal(new, old.astype(np.float16).astype(np.float32)) and not np.array_equal(new, old)
    _, old, new = _constant(by_op["fuzz_weight_gaussian"])
    ratio = np.std(new - old) / np.std(old)
    assert 0.08 < ratio < 0.12


def test_diff_describes_the_change(tiny_mod):
    m = make_mutant(tiny_mod, "block_neuron_effect", 1, with_diff=True)
    assert m.diff_text.splitlines()[0] == m.site
    assert "64 of 512 values changed" in m.diff_text and "max |delta|" in m.diff_text
    eq = make_mutant(tiny_mod, "shuffle_weight", 2, with_diff=True)
    assert "0 of 4 values changed" in eq.diff_text


def test_selection_modes(tiny_mod):
    picked = enumerate_mutants(tiny_mod, operators=["shuffle_weight"], selection=Selection("positions", positions=(0, 9)))
    assert [m.site_index for m in picked] == [0, 9]
    assert [m.site_index for m in enumerate_mutants(tiny_mod, levels=["weight"], selection=Selection("last"))] == [
        9, 9, 2, 2, 9]
    sample = enumerate_mutants(tiny_mod, levels=["weight"], selection=Selection("sample", n=2, seed=1))
    again = enumerate_mutants(tiny_mod, levels=["weight"], selection=Selection("sample", n=2, seed=1))
    assert len(sample) == 10 and [m.summary() for m in sample] == [m.summary() for m in again]


_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from mutators import make_mutant
from tests._models import tiny_module
mod = tiny_module()
print(json.dumps([[op, i, make_mutant(mod, op, i, with_diff=False).hash] for op, i in {wanted!r}]))
"""


def test_a_worker_process_rebuilds_the_same_mutants(tiny_mod):
    wanted = [("fuzz_weight_gaussian", 6), ("shuffle_weight", 0), ("invert_neuron_activation", 2),
              ("duplicate_layer", 1), ("insert_transpose_before", 0), ("swap_layers", 2)]
    here = [[op, i, make_mutant(tiny_mod, op, i, with_diff=False).hash] for op, i in wanted]
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT), wanted=wanted)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == here
