"""Pruning: zero a fraction of a model's weights, globally by magnitude or by whole channels.

One numpy core (`prune_arrays`) and one adapter per thing a runner runs: the constants of
an imported Relax module (every source and import path reaches TVM that way), the
initialisers of an ONNX model, the parameters of a torch module. Only weights (two or more
dimensions) are pruned; biases and normalisation parameters are left. Ties are broken by
a stable sort, so a prune is deterministic (the seed is not needed, but kept in records).
Zeros in a dense file do not shrink it: `ParamStats` counts the nonzeros apart.
"""
from __future__ import annotations

import numpy as np

from . import ParamStats


def prune_arrays(arrays: list[np.ndarray], axes: list[int | None], amount: float, method: str) -> list[np.ndarray]:
    """``arrays`` with ``amount`` of their values zeroed. ``magnitude``: the smallest
    absolute values over all arrays together (global); ``channel``: in each array with an
    output-channel axis (``axes``), that fraction of its channels with the smallest L1 norm
    (channel sizes differ between layers, so the fraction is per layer)."""
    if amount <= 0 or not arrays:
        return [a.copy() for a in arrays]
    if method == "channel":
        return [_prune_channels(a, axis, amount) for a, axis in zip(arrays, axes)]
    flat = np.concatenate([np.abs(a).ravel() for a in arrays])
    drop = np.zeros(flat.size, dtype=bool)
    drop[np.argsort(flat, kind="stable")[: int(amount * flat.size)]] = True
    out, start = [], 0
    for a in arrays:
        mask = drop[start : start + a.size].reshape(a.shape)
        out.append(np.where(mask, np.zeros((), a.dtype), a))
        start += a.size
    return out


def _prune_channels(array: np.ndarray, axis: int | None, amount: float) -> np.ndarray:
    if axis is None:
        return array.copy()
    moved = np.moveaxis(array, axis, 0)
    norms = np.abs(moved.reshape(moved.shape[0], -1)).sum(axis=1)
    count = int(amount * len(norms))
    out = moved.copy()
    out[np.argsort(norms, kind="stable")[:count]] = 0
    return np.moveaxis(out, 0, axis)


def param_stats(arrays) -> ParamStats:
    """How many parameter values there are, and how many are not zero."""
    arrays = list(arrays)
    return ParamStats(int(sum(a.size for a in arrays)), int(sum(np.count_nonzero(a) for a in arrays)))


# ------------------------------------------------------------------ Relax
def relax_weights(mod) -> list:
    """The weight constants of ``main`` (two or more dimensions) with their output-channel axis."""
    from mutators.weight import weight_sites

    return [(s.const, s.channel_axis) for s in weight_sites(mod) if len(s.const.ty.shape) >= 2
            and "float" in str(s.const.ty.dtype)]


def relax_constants(mod) -> list[np.ndarray]:
    """Every constant array of ``main`` (for parameter counts)."""
    from mutators.weight import weight_sites

    return [s.const.value.numpy() for s in weight_sites(mod)]


def replace_constants(mod, new: dict):
    """A copy of ``mod`` whose constants (keys of ``new``, by identity) hold new arrays."""
    import tvm
    from tvm.relax.expr_functor import PyExprMutator, mutator

    from mutators.base import main_function, replace_main

    swap = {c: tvm.ir.GenericConst(tvm.runtime.tensor(np.ascontiguousarray(a)), c.ty) for c, a in new.items()}

    @mutator
    class _Swap(PyExprMutator):
        def visit_generic_const_(self, const):
            return swap.get(const, const)

    return replace_main(mod, _Swap().visit_expr(main_function(mod)))


def prune_relax(mod, amount: float, method: str):
    """``mod`` with its weight constants pruned (the imported program, or a mutant of it)."""
    weights = relax_weights(mod)
    arrays = [c.value.numpy() for c, _ in weights]
    pruned = prune_arrays(arrays, [axis for _, axis in weights], amount, method)
    return replace_constants(mod, {c: a for (c, _), a in zip(weights, pruned)})


# ------------------------------------------------------------------ ONNX
def onnx_weights(model) -> list:
    """(initialiser, output-channel axis) of the weights of Conv, Gemm and MatMul nodes."""
    inits = {i.name: i for i in model.graph.initializer}
    found: dict = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        init = inits[node.input[1]]
        if len(init.dims) < 2:
            continue
        axis = 0
        if node.op_type == "MatMul":
            axis = len(init.dims) - 1
        elif node.op_type == "Gemm":
            trans = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axis = 0 if trans else 1
        found.setdefault(init.name, (init, axis))
    return list(found.values())


def prune_onnx(model, amount: float, method: str):
    """A copy of the ONNX model with its weight initialisers pruned."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    weights = onnx_weights(model)
    arrays = [numpy_helper.to_array(i) for i, _ in weights]
    for (init, _), array in zip(weights, prune_arrays(arrays, [a for _, a in weights], amount, method)):
        init.CopyFrom(numpy_helper.from_array(array, init.name))
    return model


def onnx_stats(model) -> ParamStats:
    from onnx import numpy_helper

    return param_stats(numpy_helper.to_array(i) for i in model.graph.initializer)


# ------------------------------------------------------------------ PyTorch
def prune_torch(module, amount: float, method: str):
    """A copy of the torch module with its conv and linear weights pruned (plain tensors:
    no ``weight_orig`` or masks are left behind, as ``torch.nn.utils.prune`` would)."""
    import copy

    import torch

    module = copy.deepcopy(module)
    layers = [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    arrays = [m.weight.detach().cpu().numpy() for m in layers]
    with torch.no_grad():
        for m, array in zip(layers, prune_arrays(arrays, [0] * len(arrays), amount, method)):
            m.weight.copy_(torch.from_numpy(array))
    return module


def torch_stats(module) -> ParamStats:
    return param_stats(t.detach().float().cpu().numpy() for t in list(module.parameters()) + list(module.buffers())
                       if t.is_floating_point())
