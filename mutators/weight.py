"""Weight mutation operators: they change the values of one constant tensor of ``main``.

Models imported with their parameters as constants (``keep_params_as_input=False``)
carry every weight as a constant. A site is one floating-point constant (with at
least two values) in order of first use; channel operators pick one output channel
of a conv / matmul weight with an RNG seeded by operator name and site index, so a
worker process rebuilds exactly the same mutant.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from .base import (
    EQUIVALENT,
    NON_VIABLE,
    Example,
    Outcome,
    RelaxOperator,
    Site,
    array_digest,
    constant_table,
    error_reason,
    hash_text,
    main_function,
    replace_main,
)
from .graph import GraphIndex, _ty_text

# Ops that only re-lay a weight out before the op that really uses it.
_LAYOUT_OPS = {"relax.permute_dims", "relax.reshape", "relax.expand_dims", "relax.squeeze"}
_CONV_OPS = {"relax.nn.conv1d", "relax.nn.conv2d", "relax.nn.conv3d", "relax.nn.conv2d_transpose"}
# Gaussian noise has this standard deviation relative to the tensor's own spread.
SIGMA_RATIO = 0.1


@dataclass(frozen=True)
class WeightSite:
    """One constant: where it is used, and its output-channel axis (None if it has none)."""

    const: object
    number: int  # 1-based, in order of first use
    total: int
    use: str  # e.g. "weight of conv2d #1 of 5 (lv)"
    channel_axis: int | None

    def describe(self) -> str:
        return f"constant #{self.number} of {self.total} {_ty_text(self.const.ty)}: {self.use}"


def _arg_name(call, i: int) -> str:
    # The ops' own argument names (x1, x2) say little for the usual linear layer.
    if call.op.name == "relax.matmul" and i == 1:
        return "weight"
    if call.op.name in ("relax.add", "relax.subtract"):
        return "bias"
    names = [a.name for a in call.op.arguments]
    return names[i] if i < len(names) else f"argument {i}"


def weight_sites(mod: tvm.IRModule) -> list[WeightSite]:
    """Every constant of ``main`` with the op that consumes it, in order of first use."""
    index = GraphIndex(mod)
    readers: dict = {}  # variable -> [(layer, argument index)]
    for layer in index.layers:
        for i, arg in enumerate(layer.call.args):
            if isinstance(arg, relax.Var):
                readers.setdefault(arg, []).append((layer, i))
    found: list = []
    seen: dict = {}
    for layer in index.layers:
        for i, arg in enumerate(layer.call.args):
            if not isinstance(arg, tvm.ir.GenericConst) or arg in seen:
                continue
            seen[arg] = True
            use, axis = f"{_arg_name(layer.call, i)} of {layer.describe()}", None
            consumer, j, axes = layer, i, None
            if layer.op_name in _LAYOUT_OPS and len(readers.get(layer.out_var, [])) == 1:
                consumer, j = readers[layer.out_var][0]
                if layer.op_name == "relax.permute_dims":
                    axes = [int(a) for a in layer.call.attrs.axes]
                use = f"{_arg_name(consumer.call, j)} of {consumer.describe()} via {layer.kind}"
                if layer.op_name != "relax.permute_dims":
                    consumer = None  # a reshape hides which axis is the channel
            if consumer is not None and j == 1:
                ndim = len(arg.ty.shape)
                if consumer.op_name in _CONV_OPS:
                    out_axis = str(consumer.call.attrs.kernel_layout).index("O")
                    axis = out_axis if axes is None else axes.index(out_axis)
                elif consumer.op_name == "relax.matmul" and ndim >= 2:
                    axis = ndim - 1 if axes is None else axes[-1]
            found.append((arg, use, axis))
    return [WeightSite(c, n + 1, len(found), use, axis) for n, (c, use, axis) in enumerate(found)]


def replace_constant(mod: tvm.IRModule, old, new_array: np.ndarray) -> tvm.IRModule:
    """A copy of ``mod`` whose constant ``old`` holds ``new_array`` (same type)."""
    new = tvm.ir.GenericConst(tvm.runtime.tensor(np.ascontiguousarray(new_array)), old.ty)

    @mutator
    class _Swap(PyExprMutator):
        def visit_generic_const_(self, const):
            return new if const.same_as(old) else const

    return replace_main(mod, _Swap().visit_expr(main_function(mod)))


def _rng(name: str, index: int) -> np.random.Generator:
    return np.random.default_rng(hash_text(f"{name}:{index}"))


class WeightOperator(RelaxOperator):
    level = "weight"
    needs_channel = False

    def __init__(self, name: str, doc: str):
        self.name, self.doc = name, doc

    def eligible(self, ws: WeightSite) -> bool:
        ty = ws.const.ty
        size = int(np.prod([int(d) for d in ty.shape])) if ty.shape is not None else 0
        if not str(ty.dtype).startswith("float") or size < 2:
            return False
        return ws.channel_axis is not None if self.needs_channel else True

    def sites(self, mod):
        chosen = [ws for ws in weight_sites(mod) if self.eligible(ws)]
        return [Site(i, self.describe(ws, i), ws) for i, ws in enumerate(chosen)]

    def describe(self, ws: WeightSite, index: int) -> str:
        return ws.describe()

    def examples(self) -> list[Example]:
        return list(EXAMPLES.get(self.name, ()))

    def new_array(self, old: np.ndarray, site: Site) -> np.ndarray:
        raise NotImplementedError

    def apply(self, mod, site):
        old = site.key.const
        return replace_constant(mod, old, self.new_array(old.value.numpy(), site))

    def mutate(self, mod, site, memo) -> Outcome:
        # Weight values are compared directly: a mutant is equivalent iff its array is
        # bit-identical to the original one (the rest of the module is untouched).
        const = site.key.const
        try:
            old = const.value.numpy()
            new = self.new_array(old, site)
            mutated = replace_constant(mod, const, new)
        except Exception as err:  # any failure of the rewrite makes the mutant non-viable
            return Outcome(None, "", NON_VIABLE, error_reason(err))
        table = constant_table(mod, memo)
        if old.dtype == new.dtype and old.tobytes() == new.tobytes():
            return Outcome(mutated, table.program_hash(), EQUIVALENT, "mutated values equal the original ones")
        digests = list(table.digests)
        digests[table.slot[const]] = array_digest(new)
        return Outcome(mutated, table.program_hash(digests=digests))

    def diff(self, original, mutated, site):
        """The IR text does not show constant values: describe the change instead."""
        old = site.key.const.value.numpy()
        new = self.new_array(old, site)
        delta = np.abs(new.astype(np.float64) - old.astype(np.float64))
        changed = int(np.count_nonzero(old != new))
        lines = [f"{site.description}", f"operator: {self.name}",
                 f"{changed} of {old.size} values changed"]
        if changed:
            lines.append(f"max |delta| {np.nanmax(delta):.6g}, mean |delta| over changed "
                         f"{np.nansum(delta) / changed:.6g}, original mean |value| {np.mean(np.abs(old)):.6g}")
        return "\n".join(lines)


def _spread(values: np.ndarray) -> float:
    """The tensor's std; for a constant tensor its mean magnitude, else 1."""
    std = float(np.std(values))
    if std > 0:
        return std
    mean = float(np.mean(np.abs(values)))
    return mean if mean > 0 else 1.0


class GaussianFuzz(WeightOperator):
    def __init__(self):
        super().__init__("fuzz_weight_gaussian",
                         f"Add seeded gaussian noise (sigma {SIGMA_RATIO} x the tensor's std) to one weight tensor.")

    def new_array(self, old, site):
        noise = _rng(self.name, site.index).normal(0.0, SIGMA_RATIO * _spread(old), size=old.shape)
        return (old + noise).astype(old.dtype)


class ShuffleWeight(WeightOperator):
    def __init__(self):
        super().__init__("shuffle_weight", "Shuffle the values of one weight tensor (seeded permutation).")

    def new_array(self, old, site):
        flat = old.reshape(-1)
        rng = _rng(self.name, site.index)
        order = rng.permutation(flat.size)
        # Small tensors often draw the identity (1 in 24 for four values): draw again.
        while flat.size > 1 and np.array_equal(order, np.arange(flat.size)):
            order = rng.permutation(flat.size)
        return flat[order].reshape(old.shape)


class DropPrecision(WeightOperator):
    def __init__(self):
        super().__init__("drop_weight_precision",
                         "Round one float32/float64 weight tensor through float16 (precision drop).")

    def eligible(self, ws):
        return super().eligible(ws) and str(ws.const.ty.dtype) in ("float32", "float64")

    def new_array(self, old, site):
        with np.errstate(over="ignore"):
            return old.astype(np.float16).astype(old.dtype)


class ChannelOperator(WeightOperator):
    """Changes one output channel of a conv or matmul weight."""

    needs_channel = True

    def channel(self, ws: WeightSite, index: int) -> int:
        count = int(ws.const.ty.shape[ws.channel_axis])
        return random.Random(f"{self.name}:{index}").randrange(count)

    def describe(self, ws, index):
        count = int(ws.const.ty.shape[ws.channel_axis])
        return f"{ws.describe()}, output channel {self.channel(ws, index)} of {count} (axis {ws.channel_axis})"

    def change(self, block: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def new_array(self, old, site):
        ws = site.key
        new = old.copy()
        where = [slice(None)] * old.ndim
        where[ws.channel_axis] = self.channel(ws, site.index)
        new[tuple(where)] = self.change(old[tuple(where)])
        return new


class BlockNeuron(ChannelOperator):
    def __init__(self):
        super().__init__("block_neuron_effect",
                         "Zero the weights of one output channel of a conv/matmul (neuron effect blocking).")

    def change(self, block):
        return np.zeros_like(block)


class InvertNeuron(ChannelOperator):
    def __init__(self):
        super().__init__("invert_neuron_activation",
                         "Negate the weights of one output channel of a conv/matmul (neuron activation inverse).")

    def change(self, block):
        return -block


OPERATORS = (GaussianFuzz(), ShuffleWeight(), BlockNeuron(), InvertNeuron(), DropPrecision())


# Worked examples (`base.Example`) on `mutators.examples.PROGRAMS`, by operator name. The
# diff of a weight mutant is a summary: ``before`` names the constant, ``after`` says how
# many of its values changed.
EXAMPLES: dict[str, tuple[Example, ...]] = {
    "fuzz_weight_gaussian": (Example("cnn", 0, "weight of conv2d #1 of 2", "36 of 36 values changed"),
                             Example("arith", 0, "gamma of batch_norm #1 of 1", "2 of 2 values changed")),
    "shuffle_weight": (Example("cnn", 3, "weight of matmul #1 of 1", "158 of 160 values changed"),),
    # one output channel: a 3x3 kernel of conv2d #1, a column of the matmul weight
    "block_neuron_effect": (Example("cnn", 0, "weight of conv2d #1 of 2", "9 of 36 values changed"),
                            Example("cnn", 2, "weight of matmul #1 of 1", "16 of 160 values changed")),
    "invert_neuron_activation": (Example("cnn", 1, "weight of conv2d #2 of 2", "36 of 144 values changed"),),
    "drop_weight_precision": (Example("cnn", 2, "weight of conv2d #2 of 2", "144 of 144 values changed"),
                              # gamma [1.5, 0.5] is exact in float16: nothing changes
                              Example("arith", 0, "gamma of batch_norm #1 of 1", "0 of 2 values changed",
                                      status="equivalent")),
}
