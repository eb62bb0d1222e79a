"""Pairing the layers of two programs: by binding for one program (an original and its
mutant, one program on two stacks), by op order, kind and shape across a conversion
(two import paths, another release of the model), with NCHW/NHWC taken into account."""
from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

from .layers import Layer, LayerGraph

SAME_PROGRAM, CONVERSION = "binding", "op order, kind and shape"
# Ops a converter folds what follows them into (batch_norm into a conv's weights, a bias
# add into a matmul): the tensors from such an op up to an op only one side has are not
# expected to agree.
FOLD_TARGETS = ("conv1d", "conv2d", "conv3d", "conv2d_transpose", "matmul", "dense", "linear")


@dataclass(frozen=True)
class Pair:
    """Layer ``a`` of program A and the layer ``b`` of program B that computes the same tensor."""

    position: int  # order along A's graph
    a: Layer
    b: Layer
    checkpoint: bool  # every path from input to output passes through both (and the pair is exact)
    exact: bool = True  # False: a run of pairs that ops of one side only follow (folded or fused there)


def canonical_shape(layer: Layer) -> tuple[int, ...]:
    """A 4-d NHWC shape as NCHW, so layers of two layouts compare."""
    if layer.layout == "NHWC" and len(layer.shape) == 4:
        n, h, w, c = layer.shape
        return (n, c, h, w)
    return layer.shape


def canonical_values(layer: Layer, values: np.ndarray) -> np.ndarray:
    """Values (N, ...) of a layer in NCHW when it is a 4-d NHWC tensor."""
    if layer.layout == "NHWC" and values.ndim == 4:
        return values.transpose(0, 3, 1, 2)
    return values


def align(graph_a: LayerGraph, graph_b: LayerGraph, same_program: bool) -> list[Pair]:
    """Pairs of data-dependent layers, in A's order, the two outputs always paired last."""
    live_a, live_b = graph_a.live(), graph_b.live()
    la = [layer for layer in graph_a.layers if layer.data_dependent and layer.name in live_a]
    lb = [layer for layer in graph_b.layers if layer.data_dependent and layer.name in live_b]
    if same_program:
        key_a = [(x.name, canonical_shape(x)) for x in la]
        key_b = [(x.name, canonical_shape(x)) for x in lb]
    else:
        key_a = [(x.kind, canonical_shape(x)) for x in la]
        key_b = [(x.kind, canonical_shape(x)) for x in lb]
    matched = []
    for block in SequenceMatcher(None, key_a, key_b, autojunk=False).get_matching_blocks():
        matched += [(la[block.a + k], lb[block.b + k]) for k in range(block.size)]
    matched = [m for m in matched if m[0].name != graph_a.output and m[1].name != graph_b.output]
    matched.append((graph_a[graph_a.output], graph_b[graph_b.output]))
    suspect_a: set[str] = set()
    suspect_b: set[str] = set()
    if not same_program:
        suspect_a = _folded(graph_a, la, {a.name for a, _ in matched})
        suspect_b = _folded(graph_b, lb, {b.name for _, b in matched})
    dom_a, dom_b = graph_a.dominators(), graph_b.dominators()
    pairs = []
    for i, (a, b) in enumerate(matched):
        last = (a.name, b.name) == (graph_a.output, graph_b.output)
        exact = last or (a.name not in suspect_a and b.name not in suspect_b)
        pairs.append(Pair(i, a, b, exact and a.name in dom_a and b.name in dom_b, exact))
    return pairs


def _folded(graph: LayerGraph, layers: list[Layer], paired: set[str]) -> set[str]:
    """Layers upstream of an unpaired layer, back to the nearest `FOLD_TARGETS` op: what
    the other side may have computed in one folded op."""
    out: set[str] = set()
    for layer in layers:
        # An unpaired fold target (a matmul whose bias add the other side paired with its
        # linear) was folded forward: nothing before it is affected.
        if layer.name in paired or layer.kind in FOLD_TARGETS:
            continue
        stack = [r for r in layer.reads if r in graph.by_name and graph[r].data_dependent]
        while stack:
            name = stack.pop()
            if name in out:
                continue
            out.add(name)
            if graph[name].kind not in FOLD_TARGETS:
                stack += [r for r in graph[name].reads if r in graph.by_name and graph[r].data_dependent]
    return out


def drop_background(pairing, role: str, values: np.ndarray) -> np.ndarray:
    """``values`` of side ``role`` without the background class (column 0 of the last axis)
    when that side has one; a tensor of another width is returned as it is. ``pairing``:
    the two opened sides (`session.Pairing`: ``a``, ``b`` and ``background``)."""
    if pairing.background != role:
        return values
    other = pairing.b if role == "a" else pairing.a
    classes = other.graph[other.graph.output].shape[-1]
    return values[..., 1:] if values.shape[-1] == classes + 1 else values
