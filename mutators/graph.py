"""Graph-level (Relax dataflow) mutation operators.

They rewrite one binding of ``main`` with a ``PyExprMutator`` whose block builder
re-normalises the rewritten value, so a rewrite that breaks type inference raises
(and the mutant is non-viable). A site is a call of ``main`` in binding order, so the
order is stable across processes. Operators that return a tuple (``batch_norm``) are
seen through their ``TupleGetItem(·, 0)``: the layer's output is that element.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from .base import Example, RelaxOperator, Site, main_function, replace_main

# Op names → short kinds used in operator names and site descriptions.
_ACTIVATIONS = {
    "relax.nn.relu": "relu", "relax.nn.relu6": "relu6", "relax.sigmoid": "sigmoid", "relax.tanh": "tanh",
    "relax.nn.leakyrelu": "leaky_relu", "relax.nn.gelu": "gelu", "relax.nn.gelu_tanh": "gelu_tanh",
    "relax.nn.silu": "silu",
}
_LAYERS = {
    "relax.nn.conv1d", "relax.nn.conv2d", "relax.nn.conv3d", "relax.nn.conv2d_transpose", "relax.matmul",
    "relax.nn.batch_norm", "relax.nn.layer_norm", "relax.nn.group_norm", "relax.add", "relax.subtract",
    "relax.multiply", "relax.divide", "relax.nn.max_pool2d", "relax.nn.avg_pool2d",
    "relax.nn.adaptive_avg_pool2d", "relax.nn.softmax", "relax.mean", *_ACTIVATIONS,
}
# Idempotent activations: duplicating them changes nothing but the code.
_IDEMPOTENT = {"relu", "relu6"}
INSERT_TARGETS = ("conv2d", "matmul", "batch_norm", "add")


def _kind(op_name: str) -> str:
    return op_name.rsplit(".", 1)[-1] if op_name not in _ACTIVATIONS else _ACTIVATIONS[op_name]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _is_tensor(ty) -> bool:
    return isinstance(ty, relax.TensorType) and ty.shape is not None


def _shape(ty) -> tuple:
    return tuple(int(d) if isinstance(d, tvm.tirx.IntImm) else str(d) for d in ty.shape)


def _ty_text(ty) -> str:
    if _is_tensor(ty):
        return f"[{','.join(str(d) for d in _shape(ty))}] {ty.dtype}"
    return type(ty).__name__


def _is_float(ty) -> bool:
    return _is_tensor(ty) and str(ty.dtype).startswith(("float", "bfloat"))


@dataclass
class Layer:
    """One call of ``main`` seen as a layer: data input, output variable, kind, position."""

    call_pos: int  # position of the call's binding in main
    out_pos: int  # position of the layer's tensor output (its TupleGetItem for tuple-returning ops)
    call_var: relax.Var
    call: tvm.ir.Call
    out_var: relax.Var
    kind: str
    op_name: str
    data: int  # index of the data input among the call's arguments (-1: none)
    ordinal: int = 0
    count: int = 0

    @property
    def tuple_output(self) -> bool:
        return self.out_pos != self.call_pos

    @property
    def in_ty(self):
        return self.call.args[self.data].ty if self.data >= 0 else None

    @property
    def out_ty(self):
        return self.out_var.ty

    def describe(self) -> str:
        name = f"{self.kind} #{self.ordinal} of {self.count} ({self.out_var.name}"
        if self.data >= 0:
            return f"{name}: {_ty_text(self.in_ty)} -> {_ty_text(self.out_ty)})"
        return f"{name}: -> {_ty_text(self.out_ty)})"

    def reapply(self, values: dict, data_expr):
        """The same layer (same weights and attributes) applied to ``data_expr``;
        ``values`` maps binding positions to the values of the module being rewritten."""
        call = values[self.call_pos]
        args = list(call.args)
        args[self.data] = data_expr
        new = tvm.ir.Call(call.op, args, call.attrs)
        return relax.TupleGetItem(new, 0) if self.tuple_output else new

    def data_expr(self, values: dict):
        return values[self.call_pos].args[self.data]

    def shape_preserving(self) -> bool:
        return self.data >= 0 and tvm_ffi.structural_equal(self.in_ty, self.out_ty)


def _activation_kind(call) -> str | None:
    name = call.op.name
    if name in _ACTIVATIONS:
        return _ACTIVATIONS[name]
    if name == "relax.clip":  # torch's ReLU6 / hardtanh(0, x) import as clip
        lo, hi = (float(a.value) if hasattr(a, "value") else None for a in call.args[1:3])
        if lo == 0.0:
            return "relu6" if hi == 6.0 else "clip"
    return None


def _vars_in(value):
    """Variables a binding value reads (ANF: its arguments or fields are leaves)."""
    if isinstance(value, relax.Var):
        return [value]
    if isinstance(value, tvm.ir.Call):
        return [a for a in value.args if isinstance(a, relax.Var)]
    if isinstance(value, relax.Tuple):
        return [a for a in value.fields if isinstance(a, relax.Var)]
    if isinstance(value, relax.TupleGetItem):
        return [value.tuple_value] if isinstance(value.tuple_value, relax.Var) else []
    return []


class GraphIndex:
    """The layers of ``main`` in binding order, and how often each variable is read."""

    def __init__(self, mod: tvm.IRModule):
        func = main_function(mod)
        bindings = [b for block in func.body.blocks for b in block.bindings if isinstance(b, relax.VarBinding)]
        self.uses: dict = {}
        getitem0: dict = {}
        for pos, b in enumerate(bindings):
            for v in _vars_in(b.value):
                self.uses[v] = self.uses.get(v, 0) + 1
            if isinstance(b.value, relax.TupleGetItem) and b.value.index == 0:
                getitem0.setdefault(b.value.tuple_value, (pos, b.var))
        for v in _vars_in(func.body.body):
            self.uses[v] = self.uses.get(v, 0) + 1
        self.layers: list[Layer] = []
        for pos, b in enumerate(bindings):
            call = b.value
            if not isinstance(call, tvm.ir.Call) or not isinstance(call.op, tvm.ir.Op):
                continue
            out_pos, out = pos, b.var
            if isinstance(b.var.ty, relax.TupleType):
                if b.var not in getitem0:
                    continue
                out_pos, out = getitem0[b.var]
            if not _is_tensor(out.ty):
                continue
            data = next((i for i, a in enumerate(call.args) if isinstance(a, relax.Var) and _is_tensor(a.ty)), -1)
            kind = _activation_kind(call) or _kind(call.op.name)
            self.layers.append(Layer(pos, out_pos, b.var, call, out, kind, call.op.name, data))
        totals: dict = {}
        for layer in self.layers:
            totals[layer.kind] = totals.get(layer.kind, 0) + 1
        seen: dict = {}
        for layer in self.layers:
            seen[layer.kind] = seen.get(layer.kind, 0) + 1
            layer.ordinal, layer.count = seen[layer.kind], totals[layer.kind]

    def consumer_of(self, layer: Layer) -> Layer | None:
        """The only layer reading ``layer``'s output as its data input, if there is one."""
        if self.uses.get(layer.out_var, 0) != 1:
            return None
        for other in self.layers:
            if other.data >= 0 and other.call.args[other.data].same_as(layer.out_var):
                return other
        return None


def rewrite_binding(mod: tvm.IRModule, target: int, make_value: Callable) -> tvm.IRModule:
    """A copy of ``mod`` whose binding at position ``target`` gets ``make_value(value, values)``.

    ``values`` maps the positions visited so far to their original values. The new
    value may nest calls and refer to the original variables: the mutator remaps
    them and its block builder emits the nested calls and infers every type. The
    program must keep its output type, else the mutant is rejected.
    """

    @mutator
    class _Rewrite(PyExprMutator):
        def __init__(self):
            super().__init__()
            self.values: dict = {}

        def visit_var_binding_(self, binding):
            pos = len(self.values)
            self.values[pos] = binding.value
            if pos == target:
                binding = relax.VarBinding(binding.var, make_value(binding.value, self.values))
            super().visit_var_binding_(binding)

    func = main_function(mod)
    rewriter = _Rewrite()
    new_func = rewriter.visit_expr(func)
    if len(rewriter.values) <= target:
        raise LookupError(f"main has no binding at position {target}")
    if not tvm_ffi.structural_equal(new_func.body.body.ty, func.body.body.ty):
        raise TypeError(f"mutant returns {new_func.body.body.ty} instead of {func.body.body.ty}")
    return replace_main(mod, new_func)


class GraphOperator(RelaxOperator):
    level = "graph"

    def __init__(self, name: str, doc: str):
        self.name, self.doc = name, doc

    def layer_sites(self, mod: tvm.IRModule) -> list[tuple[str, object]]:
        """(description, key) per site, in binding order."""
        raise NotImplementedError

    def sites(self, mod: tvm.IRModule) -> list[Site]:
        return [Site(i, desc, key) for i, (desc, key) in enumerate(self.layer_sites(mod))]

    def examples(self) -> list[Example]:
        return list(EXAMPLES.get(self.name, ()))


# ---------------------------------------------------------------- insert a tensor op

def _equal_axes(ty) -> tuple[int, int] | None:
    """The last pair of distinct axes of equal size (> 1), e.g. H and W of NCHW."""
    if not _is_tensor(ty):
        return None
    shape = _shape(ty)
    for j in range(len(shape) - 1, 0, -1):
        for i in range(j - 1, -1, -1):
            if isinstance(shape[i], int) and shape[i] == shape[j] and shape[i] > 1:
                return i, j
    return None


def _transpose(expr, axes: tuple[int, int], ndim: int):
    perm = list(range(ndim))
    perm[axes[0]], perm[axes[1]] = perm[axes[1]], perm[axes[0]]
    return relax.op.permute_dims(expr, perm)


_UNARY = {"exp": relax.op.exp, "round": relax.op.round, "negate": relax.op.negative}


class InsertOp(GraphOperator):
    """Insert ``fn`` on the data input (before) or on the output (after) of a target op.
    The ``before`` forms take parameter ``arg``: which of the op's arguments gets it (-1,
    the default: the data input; 1: a conv2d's or matmul's weight). Every form takes
    ``ops``: the target kinds, joined by ``+`` (``conv2d+matmul``; ``all``, the default:
    every kind of `INSERT_TARGETS`)."""

    def __init__(self, fn: str, where: str, arg: int = -1, ops: str = "all"):
        what = {"exp": "exp", "round": "round", "negate": "negation",
                "transpose": "a transpose of two equal-size axes"}[fn]
        on = "on its output" if where == "after" else ("on its data input" if arg < 0 else f"on its argument {arg}")
        kinds = INSERT_TARGETS if ops == "all" else tuple(ops.split("+"))
        super().__init__(f"insert_{fn}_{where}", f"Insert {what} {where} a {'/'.join(kinds)} op ({on}).")
        self.fn, self.where, self.arg, self.ops, self.kinds = fn, where, arg, ops, kinds
        self.params = {"arg": arg, "ops": ops} if where == "before" else {"ops": ops}

    def check_param(self, name, value):
        if name == "ops":
            kinds = str(value).split("+")
            if value != "all" and (not kinds or any(k not in INSERT_TARGETS for k in kinds)):
                raise ValueError(f"operator {self.name!r}: ops must be 'all' or kinds of {', '.join(INSERT_TARGETS)} "
                                 f"joined by '+', not {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            raise ValueError(f"operator {self.name!r}: arg must be an argument index (0, 1, ...) or -1 "
                             f"(the data input), not {value!r}")
        return value

    def with_params(self, params):
        return InsertOp(self.fn, self.where, params.get("arg", -1), params["ops"])

    def _argument(self, layer) -> int:
        return layer.data if self.arg < 0 else self.arg

    def layer_sites(self, mod):
        out = []
        for layer in GraphIndex(mod).layers:
            if layer.kind not in self.kinds or layer.data < 0:
                continue
            if self.where == "before" and self._argument(layer) >= len(layer.call.args):
                continue
            ty = layer.call.args[self._argument(layer)].ty if self.where == "before" else layer.out_ty
            if not _is_float(ty):
                continue
            axes = None
            if self.fn == "transpose":
                axes = _equal_axes(ty)
                if axes is None:
                    continue
            tail = f", axes {axes[0]}<->{axes[1]}" if axes else ""
            arg = f" (argument {self.arg})" if self.where == "before" and self.arg >= 0 else ""
            out.append((f"{self.fn} {self.where} {layer.describe()}{arg}{tail}", (layer, axes)))
        return out

    def _wrap(self, expr, axes, ty):
        if self.fn == "transpose":
            return _transpose(expr, axes, len(ty.shape))
        return _UNARY[self.fn](expr)

    def apply(self, mod, site):
        layer, axes = site.key
        if self.where == "after":
            return rewrite_binding(mod, layer.out_pos, lambda v, _: self._wrap(v, axes, layer.out_ty))

        def before(call, _):
            args = list(call.args)
            index = self._argument(layer)
            args[index] = self._wrap(args[index], axes, args[index].ty)
            return tvm.ir.Call(call.op, args, call.attrs)

        return rewrite_binding(mod, layer.call_pos, before)


# ---------------------------------------------------------------- replace an op

class ReplaceOp(GraphOperator):
    """Replace one op by another of the same signature and attributes."""

    def __init__(self, src: str, dst: str):
        super().__init__(f"replace_{_kind(src)}_with_{_kind(dst)}",
                         f"Replace {_article(_kind(src))} {_kind(src)} op by {_kind(dst)} (same inputs and attributes).")
        self.src, self.dst = src, dst

    def layer_sites(self, mod):
        return [(layer.describe(), layer) for layer in GraphIndex(mod).layers if layer.op_name == self.src]

    def apply(self, mod, site):
        dst = tvm.ir.Op.get(self.dst)
        return rewrite_binding(mod, site.key.call_pos, lambda c, _: tvm.ir.Call(dst, list(c.args), c.attrs))


_ACTIVATION_MAKERS = {
    "relu": relax.op.nn.relu,
    "sigmoid": relax.op.sigmoid,
    "tanh": relax.op.tanh,
    "leaky_relu": lambda x: relax.op.nn.leakyrelu(x, 0.01),
}


def _is_activation(layer: Layer) -> bool:
    return layer.data >= 0 and (layer.op_name in _ACTIVATIONS or layer.kind in ("relu6", "clip"))


def _activations(mod) -> list[Layer]:
    return [layer for layer in GraphIndex(mod).layers if _is_activation(layer)]


class ReplaceActivation(GraphOperator):
    """Replace an activation (relu, relu6, sigmoid, ...) by another one."""

    def __init__(self, dst: str):
        super().__init__(f"replace_activation_with_{dst}",
                         f"Replace an activation (relu, relu6, sigmoid, tanh, ...) by {dst}"
                         + (" (alpha 0.01)." if dst == "leaky_relu" else "."))
        self.dst = dst

    def layer_sites(self, mod):
        return [(f"{layer.describe()} -> {self.dst}", layer) for layer in _activations(mod) if layer.kind != self.dst]

    def apply(self, mod, site):
        layer = site.key
        make = _ACTIVATION_MAKERS[self.dst]
        return rewrite_binding(mod, layer.call_pos, lambda c, _: make(c.args[layer.data]))


# ---------------------------------------------------------------- layer mutations

class RemoveActivation(GraphOperator):
    def __init__(self):
        super().__init__("remove_activation",
                         "Remove an activation (replace it by identity): its output becomes its input.")

    def layer_sites(self, mod):
        return [(layer.describe(), layer) for layer in _activations(mod) if layer.shape_preserving()]

    def apply(self, mod, site):
        layer = site.key
        return rewrite_binding(mod, layer.out_pos, lambda v, values: layer.data_expr(values))


class DeactivateLayer(GraphOperator):
    def __init__(self):
        super().__init__("deactivate_layer",
                         "Deactivate a layer (not an activation) whose input and output types match: "
                         "its output becomes its input.")

    def layer_sites(self, mod):
        return [(layer.describe(), layer) for layer in GraphIndex(mod).layers
                if layer.op_name in _LAYERS and layer.op_name not in _ACTIVATIONS and layer.kind not in ("relu6", "clip")
                and layer.shape_preserving()]

    def apply(self, mod, site):
        layer = site.key
        return rewrite_binding(mod, layer.out_pos, lambda v, values: layer.data_expr(values))


class DuplicateLayer(GraphOperator):
    def __init__(self):
        super().__init__("duplicate_layer",
                         "Apply a layer twice (same weights) where its output type equals its input type.")

    def layer_sites(self, mod):
        return [(layer.describe(), layer) for layer in GraphIndex(mod).layers
                if layer.op_name in _LAYERS and layer.kind not in _IDEMPOTENT and layer.shape_preserving()]

    def apply(self, mod, site):
        layer = site.key
        return rewrite_binding(mod, layer.out_pos, lambda v, values: layer.reapply(values, v))


class SwapLayers(GraphOperator):
    def __init__(self):
        super().__init__("swap_layers",
                         "Swap two consecutive layers of different kinds (A then B becomes B then A) "
                         "where both keep their input type or one is an activation.")

    def layer_sites(self, mod):
        index = GraphIndex(mod)
        out = []
        for a in index.layers:
            if a.data < 0 or not (a.op_name in _LAYERS or a.kind == "clip"):
                continue
            b = index.consumer_of(a)
            if b is None or b.kind == a.kind or not (b.op_name in _LAYERS or b.kind == "clip"):
                continue
            # Shape-compatible: both keep their input type, or one is an elementwise
            # activation (it accepts whatever shape the other gives it).
            if not ((a.shape_preserving() and b.shape_preserving()) or _is_activation(a) or _is_activation(b)):
                continue
            out.append((f"{a.describe()} then {b.describe()}", (a, b)))
        return out

    def apply(self, mod, site):
        a, b = site.key
        return rewrite_binding(mod, b.out_pos,
                               lambda v, values: a.reapply(values, b.reapply(values, a.data_expr(values))))


OPERATORS = (
    *(InsertOp(fn, where) for fn in ("exp", "round", "negate", "transpose") for where in ("before", "after")),
    ReplaceOp("relax.add", "relax.subtract"),
    ReplaceOp("relax.subtract", "relax.add"),
    ReplaceOp("relax.multiply", "relax.divide"),
    ReplaceOp("relax.divide", "relax.multiply"),
    ReplaceOp("relax.nn.max_pool2d", "relax.nn.avg_pool2d"),
    ReplaceOp("relax.nn.avg_pool2d", "relax.nn.max_pool2d"),
    *(ReplaceActivation(dst) for dst in ("relu", "sigmoid", "tanh", "leaky_relu")),
    RemoveActivation(),
    DeactivateLayer(),
    DuplicateLayer(),
    SwapLayers(),
)


# Worked examples (`base.Example`) on `mutators.examples.PROGRAMS`, by operator name:
# program, site, text of a removed line, text of an added line of the Relax diff.
EXAMPLES: dict[str, tuple[Example, ...]] = {
    "insert_exp_before": (Example("cnn", 0, "R.nn.conv2d(x,", "R.exp(x)"),),
    "insert_exp_after": (Example("cnn", 3, "R.matmul(lv7,", "R.exp(lv_1)"),),
    "insert_round_before": (Example("cnn", 3, "R.matmul(lv7,", "R.round(lv7)"),),
    "insert_round_after": (Example("cnn", 2, "R.nn.conv2d(lv3,", "R.round(lv_1)"),),
    "insert_negate_before": (Example("arith", 0, "R.nn.batch_norm(x,", "R.negative(x)"),),
    "insert_negate_after": (Example("cnn", 4, "R.add(lv8,", "R.negative(lv_1)"),),
    "insert_transpose_before": (Example("cnn", 0, "R.nn.conv2d(x,", "R.permute_dims(x, axes=[0, 1, 3, 2])"),),
    "insert_transpose_after": (Example("cnn", 2, "R.nn.conv2d(lv3,", "R.permute_dims(lv_1, axes=[0, 1, 3, 2])"),),
    "replace_add_with_subtract": (Example("cnn", 0, "R.add(lv, ", "R.subtract(lv, "),
                                  Example("cnn", 1, "R.add(lv8, ", "R.subtract(lv8, ")),
    "replace_subtract_with_add": (Example("arith", 0, "R.subtract(lv1, ", "R.add(lv1, "),),
    "replace_multiply_with_divide": (Example("arith", 0, "R.multiply(lv2, ", "R.divide(lv2, "),),
    "replace_divide_with_multiply": (Example("arith", 0, "R.divide(lv3, ", "R.multiply(lv3, "),),
    "replace_max_pool2d_with_avg_pool2d": (Example("cnn", 0, "R.nn.max_pool2d(lv2, ", "R.nn.avg_pool2d(lv2, "),),
    "replace_avg_pool2d_with_max_pool2d": (Example("cnn", 0, "R.nn.avg_pool2d(lv5, ", "R.nn.max_pool2d(lv5, "),),
    "replace_activation_with_relu": (Example("arith", 0, "R.sigmoid(lv4)", "R.nn.relu(lv4)"),
                                     Example("arith", 1, "R.tanh(lv5)", "R.nn.relu(lv5)")),
    "replace_activation_with_sigmoid": (Example("cnn", 0, "R.nn.relu(lv1)", "R.sigmoid(lv1)"),
                                        Example("arith", 0, "R.tanh(lv5)", "R.sigmoid(lv5)")),
    "replace_activation_with_tanh": (Example("cnn", 1, "R.nn.relu(lv4)", "R.tanh(lv4)"),
                                     Example("arith", 0, "R.sigmoid(lv4)", "R.tanh(lv4)")),
    "replace_activation_with_leaky_relu": (Example("cnn", 0, "R.nn.relu(lv1)", "R.nn.leakyrelu(lv1, alpha=0.01)"),),
    # the layer's output variable is bound to its input
    "remove_activation": (Example("cnn", 0, "R.nn.relu(lv1)", 'lv2: R.Tensor((1, 4, 8, 8), dtype="float32") = lv1'),),
    "deactivate_layer": (Example("cnn", 1, "R.nn.conv2d(lv3,", 'lv4: R.Tensor((1, 4, 4, 4), dtype="float32") = lv3'),
                         Example("arith", 3, "R.divide(lv3,", 'lv4: R.Tensor((1, 2, 4, 4), dtype="float32") = lv3')),
    # the layer is applied again to its own output (lv_1)
    "duplicate_layer": (Example("cnn", 0, "R.add(lv, ", "R.add(lv_1, "),
                        Example("arith", 5, "R.tanh(lv5)", "R.tanh(lv_1)")),
    # relu then max_pool2d: the pool now reads relu's input; sigmoid then tanh: tanh reads sigmoid's input
    "swap_layers": (Example("cnn", 1, "R.nn.max_pool2d(lv2, ", "R.nn.max_pool2d(lv1, "),
                    Example("arith", 4, "R.tanh(lv5)", "R.tanh(lv4)")),
}
