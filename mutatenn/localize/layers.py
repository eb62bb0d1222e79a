"""A Relax program's ``main`` as a list of typed layer records: one per tensor-valued
binding, with its op kind, output shape and layout, hyperparameters and constant inputs.

Everything else in `mutatenn.localize` reads programs through these records: capture
exposes layers by name, alignment pairs layers of two programs, the conversion analysis
compares their attributes and constants, the reduction cuts a run of them out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

# Attributes that describe what an op computes (not how its result is stored): compared
# between a source and its conversion. Layout fields are left out: a conversion may
# change layouts on purpose, and alignment takes layouts into account separately.
HYPERPARAMETERS = ("strides", "padding", "dilation", "groups", "pool_size", "ceil_mode", "count_include_pad",
                   "epsilon", "axis", "axes", "center", "scale", "alpha", "beta", "transpose_a", "transpose_b",
                   "keepdims", "min", "max", "rate")
LAYOUT_ATTRS = ("data_layout", "layout")  # the attribute naming a 4-d op's data layout
# Ops whose output keeps the layout of their data input (everything 4-d without a layout attribute).
_TRAILING_INDEX = re.compile(r"_?\d+$")


@dataclass(frozen=True)
class Layer:
    """One tensor-valued binding of ``main``.

    ``kind`` is the op without its namespace (``conv2d``, ``add``, ``relu``; a lowered
    program's ``call_tir`` takes its PrimFunc's name, ``conv2d1`` -> ``conv2d``);
    ``consts`` names the positions of its constant arguments; ``reads`` the layers (and
    ``main``'s parameter) it reads; ``data_dependent`` is False for layers computed from
    constants alone (a weight's transpose), which no input can make diverge.
    """

    index: int
    name: str
    kind: str
    op: str
    shape: tuple[int, ...]
    dtype: str
    layout: str  # NCHW / NHWC for 4-d tensors, "" otherwise
    attrs: dict = field(default_factory=dict, hash=False)
    consts: tuple[int, ...] = ()
    reads: tuple[str, ...] = ()
    data_dependent: bool = True

    def describe(self) -> str:
        shape = "x".join(str(d) for d in self.shape)
        return f"{self.name} {self.kind} ({shape})"


@dataclass
class LayerGraph:
    """The layers of one program in binding order, and where its constants and output are.
    ``constants`` holds a handle per constant (a Relax ``GenericConst``, an ONNX initializer
    name, a torch attribute path) and ``read`` turns a handle into its array."""

    layers: list[Layer]
    output: str  # the layer ``main`` returns
    input_name: str
    input_layout: str
    constants: dict = field(default_factory=dict, repr=False)  # layer name -> [(arg position, handle)]
    aliases: dict = field(default_factory=dict)  # a binding that renames a layer -> that layer's name
    read: Callable[[Any], np.ndarray] = field(default=lambda const: const.value.numpy(), repr=False)

    def __post_init__(self):
        self.by_name = {layer.name: layer for layer in self.layers}

    def __getitem__(self, name: str) -> Layer:
        return self.by_name[name]

    def arrays(self, name: str) -> list[tuple[int, np.ndarray]]:
        """(argument position, value) of each constant the layer reads."""
        return [(pos, self.read(const)) for pos, const in self.constants.get(name, [])]

    def consumers(self) -> dict[str, list[str]]:
        """Layer name -> the layers reading it."""
        out: dict[str, list[str]] = {layer.name: [] for layer in self.layers}
        for layer in self.layers:
            for name in layer.reads:
                out.setdefault(name, []).append(layer.name)
        return out

    def live(self) -> set[str]:
        """Layers the output depends on (a ``zeros_like`` whose tuple is only indexed at 0 is not)."""
        seen, stack = {self.output}, [self.output]
        while stack:
            layer = self.by_name.get(stack.pop())
            for name in layer.reads if layer is not None else ():
                if name not in seen:
                    seen.add(name)
                    stack.append(name)
        return seen & set(self.by_name)

    def dominators(self) -> set[str]:
        """Layers every path from the input to the output goes through: where two runs of
        one computation agree, everything after depends only on what comes after."""
        reads = {layer.name: [r for r in layer.reads] for layer in self.layers}
        chain: set[str] = set()
        for layer in self.layers:
            if layer.data_dependent and not _reachable_without(reads, self.output, self.input_name, layer.name):
                chain.add(layer.name)
        return chain


def _reachable_without(reads: dict, start: str, goal: str, removed: str) -> bool:
    """Whether ``goal`` is reached from ``start`` walking the ``reads`` edges backwards,
    without passing through ``removed``."""
    if start == removed:
        return False
    seen, stack = {start}, [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for prev in reads.get(node, ()):
            if prev != removed and prev not in seen:
                seen.add(prev)
                stack.append(prev)
    return False


def layer_graph(mod, input_layout: str = "NCHW") -> LayerGraph:
    """The layer records of ``mod``'s ``main`` (a Relax program, or one after LegalizeOps)."""
    from tvm import relax

    func = mod["main"]
    if len(func.params) != 1:
        raise ValueError(f"main takes {len(func.params)} parameters; one image input is expected")
    input_name = func.params[0].name
    layouts = {input_name: input_layout}
    alias: dict[str, str] = {}  # a binding that only renames (gv = lv24) -> the name it renames
    tuples: dict[str, Any] = {}  # a tuple-valued binding -> its value (batch_norm's call, a tuple literal)
    dependent = {input_name}
    layers: list[Layer] = []
    constants: dict = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            if not isinstance(binding, relax.VarBinding):
                continue
            name, value = binding.var.name, binding.value
            if isinstance(value, relax.Var):
                alias[name] = alias.get(value.name, value.name)
                continue
            if isinstance(binding.var.ty, relax.TupleType):
                tuples[name] = value
                continue
            if not isinstance(binding.var.ty, relax.TensorType) or binding.var.ty.shape is None:
                continue
            call = value
            if isinstance(value, relax.TupleGetItem):
                source = value.tuple_value.name if isinstance(value.tuple_value, relax.Var) else ""
                inner = tuples.get(source)
                if isinstance(inner, relax.Tuple) and isinstance(inner.fields[value.index], relax.Var):
                    alias[name] = alias.get(inner.fields[value.index].name, inner.fields[value.index].name)
                    continue
                call = inner  # batch_norm(...)[0] stands for the batch_norm
            layer = _layer(len(layers), name, call, binding.var.ty, alias, layouts, dependent, constants)
            layers.append(layer)
            layouts[name] = layer.layout
            if layer.data_dependent:
                dependent.add(name)
    ret = func.body.body
    output = alias.get(ret.name, ret.name) if isinstance(ret, relax.Var) else ""
    if output not in {layer.name for layer in layers}:
        raise ValueError("main does not return one tensor computed by a layer")
    return LayerGraph(layers, output, input_name, input_layout, constants, alias)


def _layer(index, name, call, ty, alias, layouts, dependent, constants) -> Layer:
    """One record from a binding's call (``call`` None: a value with no op, kept as ``value``)."""
    from tvm import relax

    op, kind, args, attrs = "", "value", [], {}
    if isinstance(call, relax.Call):
        args = list(call.args)
        if isinstance(call.op, relax.GlobalVar):  # call_tir lowered away, or a subfunction
            op = call.op.name_hint
        else:
            op = call.op.name
        if op == "relax.call_tir" and len(args) >= 2:
            op = args[0].name_hint
            args = list(args[1].fields) if isinstance(args[1], relax.Tuple) else [args[1]]
        kind = _kind(op)
        attrs = attr_dict(call.attrs)
    reads, consts = [], []
    for pos, arg in enumerate(args):
        if isinstance(arg, relax.Var):
            reads.append(alias.get(arg.name, arg.name))
        elif _is_constant(arg):
            consts.append(pos)
            constants.setdefault(name, []).append((pos, arg))
    shape = tuple(int(d) for d in ty.shape)
    layout = ""
    if len(shape) == 4:
        given = next((str(attrs[k]) for k in LAYOUT_ATTRS if k in attrs), "")
        inherited = next((layouts.get(r, "") for r in reads if layouts.get(r)), "")
        layout = attrs.get("out_layout") or given or inherited
    return Layer(index, name, kind, op, shape, str(ty.dtype), str(layout), attrs, tuple(consts), tuple(reads),
                 any(r in dependent for r in reads))


def _kind(op: str) -> str:
    """``relax.nn.conv2d`` -> ``conv2d``; a PrimFunc name ``conv2d1`` -> ``conv2d``."""
    if op.startswith("relax."):
        return op.rsplit(".", 1)[-1]
    return _TRAILING_INDEX.sub("", op) or op


def _is_constant(expr) -> bool:
    import tvm

    return isinstance(expr, tvm.ir.GenericConst)


def attr_dict(attrs) -> dict:
    """An op's attributes as plain Python values (tuples of ints, floats, strings)."""
    if attrs is None:
        return {}
    return {key: plain(getattr(attrs, key)) for key in attr_fields(attrs)}


def attr_fields(attrs) -> list[str]:
    """The field names of an attributes object, as its FFI type declares them."""
    info = getattr(type(attrs), "__tvm_ffi_type_info__", None)
    return [f.name for f in info.fields] if info is not None else []


def with_attr(attrs, key: str, value):
    """A copy of ``attrs`` with one field changed (attributes objects are immutable)."""
    import tvm

    fields = {name: getattr(attrs, name) for name in attr_fields(attrs)}
    fields[key] = list(value) if isinstance(value, tuple) else value
    return tvm.ir.make_node(type(attrs).__tvm_ffi_type_info__.type_key, **fields)


def plain(value):
    """A TVM attribute value as a Python value."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "value") and isinstance(value.value, (int, float, bool)):
        return value.value
    try:
        return tuple(plain(v) for v in value)
    except TypeError:
        return str(value)


def hyperparameters(layer: Layer) -> dict:
    """The attributes of a layer that say what it computes (`HYPERPARAMETERS`)."""
    return {k: v for k, v in layer.attrs.items() if k in HYPERPARAMETERS}
