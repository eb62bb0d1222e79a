"""Graph-level operators on a tiny real CNN: every operator's mutants are enumerated,
one is built and run, and the original module is never changed."""
from __future__ import annotations

import numpy as np
import pytest
import tvm_ffi

from mutators import EQUIVALENT, NON_VIABLE, PENDING, Selection, catalogue, enumerate_mutants, graph, make_mutant
from mutators.base import RelaxOperator, Site, relax_program_hash
from tests._models import build_and_run, tiny_input, tiny_module

# Sites per operator on the tiny CNN (conv2d, bias add, batch_norm, relu, max_pool,
# two linear layers as permute_dims + matmul + bias add, residual add).
EXPECTED_SITES = {
    "insert_exp_before": 8, "insert_exp_after": 8, "insert_round_before": 8, "insert_round_after": 8,
    "insert_negate_before": 8, "insert_negate_after": 8, "insert_transpose_before": 3,
    "insert_transpose_after": 3, "replace_add_with_subtract": 4, "replace_subtract_with_add": 0,
    "replace_multiply_with_divide": 0, "replace_divide_with_multiply": 0,
    "replace_max_pool2d_with_avg_pool2d": 1, "replace_avg_pool2d_with_max_pool2d": 0,
    "replace_activation_with_relu": 0, "replace_activation_with_sigmoid": 1, "replace_activation_with_tanh": 1,
    "replace_activation_with_leaky_relu": 1, "remove_activation": 1, "deactivate_layer": 6,
    "duplicate_layer": 6, "swap_layers": 4,
}


@pytest.fixture(scope="module")
def mod():
    return tiny_module()


@pytest.fixture(scope="module")
def original_output(mod):
    return build_and_run(mod, tiny_input())


@pytest.fixture(scope="module")
def mutants(mod):
    before = tvm_ffi.structural_hash(mod)
    out = enumerate_mutants(mod, levels=["graph"])
    assert tvm_ffi.structural_hash(mod) == before
    return out


def test_catalogue_lists_every_graph_operator_once():
    names = [op.name for op in catalogue()]
    assert len(names) == len(set(names))
    graph_names = [op.name for op in graph.OPERATORS]
    assert set(graph_names) == set(EXPECTED_SITES)
    for op in graph.OPERATORS:
        assert op.level == "graph" and op.doc and "\n" not in op.doc


def test_site_counts_and_descriptions(mod, mutants):
    counts = {name: 0 for name in EXPECTED_SITES}
    for m in mutants:
        counts[m.operator] += 1
    assert counts == EXPECTED_SITES
    m = next(m for m in mutants if m.id == "insert_exp_after#0")
    assert m.site == "exp after conv2d #1 of 1 (lv: [1,3,8,8] float32 -> [1,4,8,8] float32)"
    assert all(m.status in (PENDING, EQUIVALENT, NON_VIABLE) for m in mutants)
    assert all(m.status == PENDING and m.mod is not None and len(m.hash) == 16 for m in mutants)


@pytest.mark.parametrize("name", [n for n, c in EXPECTED_SITES.items() if c])
def test_each_operator_builds_runs_and_changes_the_output(name, mod, original_output, mutants):
    before = tvm_ffi.structural_hash(mod)
    first = next(m for m in mutants if m.operator == name)
    m = make_mutant(mod, name, first.site_index, with_diff=True)
    assert (m.status, m.hash, m.site) == (first.status, first.hash, first.site)
    assert m.diff_text and m.diff_text.startswith("--- original")
    out = build_and_run(m.mod, tiny_input())
    assert out.shape == original_output.shape
    assert not np.allclose(out, original_output, rtol=1e-5, atol=1e-6), f"{m.id} ({m.site}) left the output"
    assert tvm_ffi.structural_hash(mod) == before


def test_transpose_swaps_the_two_equal_axes(mod):
    m = make_mutant(mod, "insert_transpose_after", 0)
    assert "axes 2<->3" in m.site
    assert "R.permute_dims(lv, axes=[0, 1, 3, 2])" in m.diff_text


def test_batch_norm_is_mutated_through_its_tuple_output(mod):
    m = make_mutant(mod, "insert_negate_after", 2)
    assert m.site.startswith("negate after batch_norm #1 of 1")
    added = [line for line in m.diff_text.splitlines() if line.startswith("+ ")]
    assert any("R.negative(" in line for line in added)
    dup = make_mutant(mod, "duplicate_layer", 1)
    assert dup.site.startswith("batch_norm #1 of 1")
    assert sum("R.nn.batch_norm(" in line for line in dup.diff_text.splitlines() if line.startswith("+ ")) == 1


def test_same_program_from_two_operators_has_one_hash(mutants):
    # exp after the bias add feeding batch_norm is exp before that batch_norm.
    by_id = {m.id: m for m in mutants}
    assert by_id["insert_exp_after#1"].hash == by_id["insert_exp_before#2"].hash
    assert len({m.hash for m in mutants}) > len(mutants) * 0.8


def test_incompatible_swap_is_non_viable_with_a_reason(mod):
    index = graph.GraphIndex(mod)
    conv, bias = index.layers[0], index.layers[2]
    assert (conv.kind, bias.kind) == ("conv2d", "add")
    swap = next(op for op in graph.OPERATORS if op.name == "swap_layers")
    result = swap.mutate_relax(mod, Site(0, "conv2d then add", (conv, bias)))
    assert result.status == NON_VIABLE and result.mod is None
    assert "relax.add" in result.reason and "broadcastable" in result.reason


def test_identity_rewrite_is_equivalent_with_the_original_hash(mod):
    class Identity(RelaxOperator):
        name, level, doc = "identity", "graph", "rewrites a binding to itself"

        def sites(self, mod):
            return [Site(0, "first binding", 0)]

        def apply(self, mod, site):
            return graph.rewrite_binding(mod, site.key, lambda value, values: value)

    op = Identity()
    result = op.mutate_relax(mod, op.sites(mod)[0], {})
    assert result.status == EQUIVALENT
    assert result.hash == relax_program_hash(mod)


def test_selection_modes(mod):
    name = ["insert_exp_after"]
    every = [m.site_index for m in enumerate_mutants(mod, operators=name, selection=Selection("every", k=3))]
    assert every == [0, 3, 6]
    assert [m.site_index for m in enumerate_mutants(mod, operators=name, selection=Selection("first"))] == [0]
    assert [m.site_index for m in enumerate_mutants(mod, operators=name, selection=Selection("last"))] == [7]
    picked = enumerate_mutants(mod, operators=name, selection=Selection("positions", positions=(1, 5, 99)))
    assert [m.site_index for m in picked] == [1, 5]
    a = enumerate_mutants(mod, operators=name, selection=Selection("sample", n=3, seed=7))
    b = enumerate_mutants(mod, operators=name, selection=Selection("sample", n=3, seed=7))
    assert [m.site_index for m in a] == [m.site_index for m in b] and len(a) == 3
    assert [m.hash for m in a] == [m.hash for m in b]
    assert len(enumerate_mutants(mod, levels=["graph"], selection=Selection("first"))) == sum(
        1 for c in EXPECTED_SITES.values() if c)
    with pytest.raises(ValueError):
        enumerate_mutants(mod, operators=name, selection=Selection("every", k=0))
    with pytest.raises(ValueError):
        enumerate_mutants(mod, operators=name, selection=Selection("bogus"))


def test_unknown_site_is_a_key_error(mod):
    with pytest.raises(KeyError):
        make_mutant(mod, "remove_activation", 5)
