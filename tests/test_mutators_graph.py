"""Graph-level operators on a tiny real CNN: every operator's mutants are enumerated,
one is built and run, and the original module is never changed."""
from __future__ import annotations

import numpy as np
import pytest
import tvm_ffi

from mutators import EQUIVALENT, NON_VIABLE, PENDING, Selection, catalogue, enumerate_mutants, graph, make_mutant
from mutators.base import RelaxOperator, Site, SiteSelectionError, relax_program_hash
from tests._models import build_and_run, tiny_input

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
def mutants(tiny_mod):
    before = tvm_ffi.structural_hash(tiny_mod)
    out = enumerate_mutants(tiny_mod, levels=["graph"])
    assert tvm_ffi.structural_hash(tiny_mod) == before
    return out


def test_catalogue_lists_every_graph_operator_once():
    names = [op.name for op in catalogue()]
    assert len(names) == len(set(names))
    graph_names = [op.name for op in graph.OPERATORS]
    assert set(EXPECTED_SITES) <= set(graph_names)  # an added operator has its count in its own tests
    for op in graph.OPERATORS:
        assert op.level == "graph" and op.doc and "\n" not in op.doc


def test_site_counts_and_descriptions(tiny_mod, mutants):
    counts = {name: sum(m.operator == name for m in mutants) for name in EXPECTED_SITES}
    assert counts == EXPECTED_SITES
    m = next(m for m in mutants if m.id == "insert_exp_after#0")
    assert m.site == "exp after conv2d #1 of 1 (lv: [1,3,8,8] float32 -> [1,4,8,8] float32)"
    # No rewrite of the tiny CNN is ill-typed or structurally the original: all are to be built.
    assert all(m.status == PENDING and m.mod is not None and len(m.hash) == 16 for m in mutants)


@pytest.mark.parametrize("name", [n for n, c in EXPECTED_SITES.items() if c])
def test_each_operator_builds_runs_and_changes_the_output(name, tiny_mod, tiny_output, mutants):
    before = tvm_ffi.structural_hash(tiny_mod)
    first = next(m for m in mutants if m.operator == name)
    m = make_mutant(tiny_mod, name, first.site_index, with_diff=True)
    assert (m.status, m.hash, m.site) == (first.status, first.hash, first.site)
    assert m.diff_text and m.diff_text.startswith("--- original")
    out = build_and_run(m.mod, tiny_input())
    assert out.shape == tiny_output.shape
    assert not np.allclose(out, tiny_output, rtol=1e-5, atol=1e-6), f"{m.id} ({m.site}) left the output"
    assert tvm_ffi.structural_hash(tiny_mod) == before


def test_transpose_swaps_the_two_equal_axes(tiny_mod):
    m = make_mutant(tiny_mod, "insert_transpose_after", 0)
    assert "axes 2<->3" in m.site
    assert "R.permute_dims(lv, axes=[0, 1, 3, 2])" in m.diff_text


def test_batch_norm_is_mutated_through_its_tuple_output(tiny_mod):
    m = make_mutant(tiny_mod, "insert_negate_after", 2)
    assert m.site.startswith("negate after batch_norm #1 of 1")
    added = [line for line in m.diff_text.splitlines() if line.startswith("+ ")]
    assert any("R.negative(" in line for line in added)
    dup = make_mutant(tiny_mod, "duplicate_layer", 1)
    assert dup.site.startswith("batch_norm #1 of 1")
    assert sum("R.nn.batch_norm(" in line for line in dup.diff_text.splitlines() if line.startswith("+ ")) == 1


def test_same_program_from_two_operators_has_one_hash(mutants):
    # exp after the bias add feeding batch_norm is exp before that batch_norm.
    by_id = {m.id: m for m in mutants}
    assert by_id["insert_exp_after#1"].hash == by_id["insert_exp_before#2"].hash
    assert len({m.hash for m in mutants}) > len(mutants) * 0.8


def test_incompatible_swap_is_non_viable_with_a_reason(tiny_mod):
    index = graph.GraphIndex(tiny_mod)
    conv, bias = index.layers[0], index.layers[2]
    assert (conv.kind, bias.kind) == ("conv2d", "add")
    swap = next(op for op in graph.OPERATORS if op.name == "swap_layers")
    result = swap.mutate(tiny_mod, Site(0, "conv2d then add", (conv, bias)), {})
    assert result.status == NON_VIABLE and result.mod is None
    assert "relax.add" in result.reason and "broadcastable" in result.reason


def test_identity_rewrite_is_equivalent_with_the_original_hash(tiny_mod):
    class Identity(RelaxOperator):
        name, level, doc = "identity", "graph", "rewrites a binding to itself"

        def sites(self, mod):
            return [Site(0, "first binding", 0)]

        def apply(self, mod, site):
            return graph.rewrite_binding(mod, site.key, lambda value, values: value)

    op = Identity()
    result = op.mutate(tiny_mod, op.sites(tiny_mod)[0], {})
    assert result.status == EQUIVALENT
    assert result.hash == relax_program_hash(tiny_mod)


def test_commuting_swap_is_equivalent_but_only_structural_equality_is_claimed(tiny_mod, tiny_output, mutants):
    """relu then max_pool swapped is max_pool then relu: the same function (relu is monotone),
    so the mutant computes the same bits. The check is structural (README: the lowered module
    structurally equal to the original), so this one is not claimed: it is built and survives."""
    m = make_mutant(tiny_mod, "swap_layers", 2, with_diff=True)
    assert m.site.startswith("relu #1 of 1") and "then max_pool2d #1 of 1" in m.site
    assert m.status == PENDING and m.hash != relax_program_hash(tiny_mod)
    assert m.hash == next(x.hash for x in mutants if x.id == "swap_layers#2")
    added = [line for line in m.diff_text.splitlines() if line.startswith("+ ")]
    assert any("R.nn.max_pool2d(" in line for line in added) and any("R.nn.relu(" in line for line in added)
    np.testing.assert_array_equal(build_and_run(m.mod, tiny_input()), tiny_output)
    # The other swaps do change the function.
    for index in (0, 1, 3):
        other = make_mutant(tiny_mod, "swap_layers", index, with_diff=False)
        assert not np.allclose(build_and_run(other.mod, tiny_input()), tiny_output, rtol=1e-5, atol=1e-6)


def _pruned_conv_module(zero_channel: int | None):
    """conv2d (3 -> 4 channels) + relu + linear, with one output channel of the convolution
    pruned (all its weights zero) when ``zero_channel`` is given."""
    import torch
    import tvm.relax.frontend.torch  # noqa: F401  (registers the frontend)

    class Pruned(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 8 * 8, 5)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))

    torch.manual_seed(0)
    model = Pruned().eval()
    if zero_channel is not None:
        with torch.no_grad():
            model.conv.weight[zero_channel] = 0.0
    with torch.no_grad():
        exported = torch.export.export(model, (torch.from_numpy(tiny_input()),))
    return tvm.relax.frontend.torch.from_exported_program(exported, keep_params_as_input=False)


def test_blocking_an_already_pruned_channel_is_claimed_equivalent():
    """A real catalogue operator on the Relax level (the path graph operators share) gives an
    equivalent mutant: zeroing a conv channel that pruning already zeroed changes no value."""
    block = next(op for op in catalogue() if op.name == "block_neuron_effect")
    unpruned = _pruned_conv_module(None)
    site = block.sites(unpruned)[0]
    assert site.description.startswith("constant #1 of 4 [4,3,3,3] float32: weight of conv2d #1 of 1")
    channel = block.channel(site.key, site.index)
    assert site.description.endswith(f"output channel {channel} of 4 (axis 0)")
    # On the dense model the same site changes the output: the operator is not a no-op.
    dense = make_mutant(unpruned, "block_neuron_effect", 0)
    assert dense.status == PENDING and dense.hash != relax_program_hash(unpruned)
    assert not np.allclose(build_and_run(dense.mod, tiny_input()), build_and_run(unpruned, tiny_input()))

    pruned = _pruned_conv_module(channel)
    before = tvm_ffi.structural_hash(pruned)
    m = make_mutant(pruned, "block_neuron_effect", 0)
    assert (m.level, m.site) == ("weight", block.sites(pruned)[0].description)
    assert m.status == EQUIVALENT and "equal the original" in m.reason
    assert m.hash == relax_program_hash(pruned)  # a campaign never builds it
    assert tvm_ffi.structural_equal(m.mod, pruned)
    np.testing.assert_array_equal(build_and_run(m.mod, tiny_input()), build_and_run(pruned, tiny_input()))
    # Enumerated together with the graph operators (one shared memo), the verdicts stay the same.
    together = {x.id: x for x in enumerate_mutants(pruned, levels=["graph", "weight"])}
    assert together["block_neuron_effect#0"].status == EQUIVALENT
    assert together["block_neuron_effect#0"].hash == m.hash
    others = [x for x in together.values() if x.id != "block_neuron_effect#0"]
    assert all(x.status == PENDING and x.hash != m.hash for x in others if x.level == "graph")
    assert tvm_ffi.structural_hash(pruned) == before


def test_selection_modes(tiny_mod):
    name = ["insert_exp_after"]
    every = [m.site_index for m in enumerate_mutants(tiny_mod, operators=name, selection=Selection("every", k=3))]
    assert every == [0, 3, 6]
    assert [m.site_index for m in enumerate_mutants(tiny_mod, operators=name, selection=Selection("first"))] == [0]
    assert [m.site_index for m in enumerate_mutants(tiny_mod, operators=name, selection=Selection("last"))] == [7]
    picked = enumerate_mutants(tiny_mod, operators=name, selection=Selection("positions", positions=(1, 5)))
    assert [m.site_index for m in picked] == [1, 5]
    with pytest.raises(SiteSelectionError, match="8 sites"):  # never dropped silently
        enumerate_mutants(tiny_mod, operators=name, selection=Selection("positions", positions=(1, 5, 99)))
    a = enumerate_mutants(tiny_mod, operators=name, selection=Selection("sample", n=3, seed=7))
    b = enumerate_mutants(tiny_mod, operators=name, selection=Selection("sample", n=3, seed=7))
    assert [m.site_index for m in a] == [m.site_index for m in b] and len(a) == 3
    assert [m.hash for m in a] == [m.hash for m in b]
    firsts = enumerate_mutants(tiny_mod, levels=["graph"], selection=Selection("first"))
    assert all(m.site_index == 0 for m in firsts) and len({m.operator for m in firsts}) == len(firsts)
    assert {m.operator for m in firsts} & set(EXPECTED_SITES) == {n for n, c in EXPECTED_SITES.items() if c}
    with pytest.raises(ValueError):
        enumerate_mutants(tiny_mod, operators=name, selection=Selection("every", k=0))
    with pytest.raises(ValueError):
        enumerate_mutants(tiny_mod, operators=name, selection=Selection("bogus"))


def test_unknown_site_is_a_key_error(tiny_mod):
    with pytest.raises(KeyError):
        make_mutant(tiny_mod, "remove_activation", 5)
