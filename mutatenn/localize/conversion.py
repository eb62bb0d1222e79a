"""Conversion fault analysis (after Fix-Con): a source program (A) against its converted
program (B), layer pair by layer pair: parameters (weights, biases), hyperparameters
(stride, padding, dilation, groups, epsilon, axis, ...) and input preprocessing. Each
difference gets its size and a repair (restore A's constant into B, set B's attribute
to A's value, feed B A's preprocessing); the repairs are applied to B's Relax program,
B is run again, and top-1 agreement with A is reported before and after."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .align import drop_background
from .divergence import measure
from .layers import Layer, LayerGraph, hyperparameters, layer_graph, with_attr

PARAMETER, HYPERPARAMETER, PREPROCESSING = "parameter", "hyperparameter", "preprocessing"


@dataclass(frozen=True)
class Difference:
    """One difference between a layer pair of A and B, and how to repair it in B."""

    category: str  # PARAMETER, HYPERPARAMETER or PREPROCESSING
    position: int  # the pair's position along A's graph (-1: the input)
    layer_a: str
    layer_b: str
    detail: str
    size: float  # relative L2 of the constants; for attributes the largest relative change
    repair: str  # in words
    applied: bool = True  # the repair is applied (not to a constant of an approximate pair: folding changes constants)

    def row(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Repair:
    applied: list[str]
    agreement_before: float
    agreement_after: float
    images: int
    rel_l2_before: float
    rel_l2_after: float


@dataclass
class ConversionReport:
    differences: list[Difference]
    repair: Repair | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"differences": [d.row() for d in self.differences],
                "repair": dataclasses.asdict(self.repair) if self.repair else None, "notes": list(self.notes)}

    def format(self) -> str:
        """The terminal view: each difference, then the repair's effect."""
        if not self.differences:
            lines = ["conversion analysis: no parameter, hyperparameter or preprocessing difference found"]
        else:
            lines = ["conversion analysis:"]
            for d in self.differences:
                where = f"{d.layer_a} / {d.layer_b}" if d.position >= 0 else "input"
                approx = "" if d.applied else " [approximate pair: constants differ by folding; not repaired]"
                lines.append(f"  {d.category:<14} {where:<14} {d.detail} (size {d.size:.3g}) -> {d.repair}{approx}")
        r = self.repair
        if r is not None:
            lines.append(f"repair: {'; '.join(r.applied) or 'nothing to apply'}")
            lines.append(f"top-1 agreement with A on {r.images} images: before {r.agreement_before:.4f}, "
                         f"after {r.agreement_after:.4f} (output relative L2 {r.rel_l2_before:.3g} -> {r.rel_l2_after:.3g})")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


# ---------------------------------------------------------------- finding differences
def parameters(graph: LayerGraph, layer: Layer) -> list[tuple[str, int, np.ndarray]]:
    """(owner layer, argument position, value) of the constants a layer computes with:
    its own, and those reaching it through constant-only layers (a bias reshaped first)."""
    out = [(layer.name, pos, arr) for pos, arr in graph.arrays(layer.name)]
    for name in layer.reads:
        if name in graph.by_name and not graph[name].data_dependent:
            out += [(owner, pos, arr) for owner, pos, arr in parameters(graph, graph[name])]
    return out


def canonical_weight(layer: Layer, array: np.ndarray) -> np.ndarray:
    """A convolution kernel in OIHW whatever its kernel layout (HWIO from TFLite, ...)."""
    layout = str(layer.attrs.get("kernel_layout", ""))
    if array.ndim == 4 and sorted(layout) == sorted("OIHW") and layout != "OIHW":
        return array.transpose([layout.index(c) for c in "OIHW"])
    return array


def parameter_differences(pairs, graph_a: LayerGraph, graph_b: LayerGraph, tolerance: float):
    """Differences of the constants of every pair, in order; with the repair actions."""
    diffs, actions = [], []
    for pair in pairs:
        pa, pb = parameters(graph_a, pair.a), parameters(graph_b, pair.b)
        for (_, _, xa), (owner_b, pos_b, xb) in zip(pa, pb):
            ca, cb = canonical_weight(pair.a, xa), canonical_weight(pair.b, xb)
            if ca.shape != cb.shape or not np.issubdtype(ca.dtype, np.floating):
                continue
            rel, mx = measure(ca, cb)
            if rel <= tolerance:
                continue
            distinct_a, distinct_b = np.unique(ca).size, np.unique(cb).size
            detail = f"{_role(pos_b, owner_b, pair.b)} {'x'.join(map(str, cb.shape))}: max abs {mx:.3g}"
            if distinct_b < distinct_a / 4:
                detail += f", {distinct_b} distinct values against A's {distinct_a} (precision lost)"
            if xa.dtype != xb.dtype:
                detail += f", stored as {xb.dtype} (A: {xa.dtype})"
            diffs.append(Difference(PARAMETER, pair.position, pair.a.name, pair.b.name, detail, rel,
                                    f"restore A's {_role(pos_b, owner_b, pair.b)}", pair.exact))
            back = xa if ca is xa and cb is xb else canonical_back(pair.b, ca, xb)
            actions.append(("constant", owner_b, pos_b, back) if pair.exact else None)
    return diffs, actions


def canonical_back(layer: Layer, canonical: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A's OIHW kernel laid out as B's kernel is."""
    layout = str(layer.attrs.get("kernel_layout", ""))
    if canonical.ndim == 4 and sorted(layout) == sorted("OIHW") and layout != "OIHW":
        return canonical.transpose(["OIHW".index(c) for c in layout])
    return canonical.reshape(like.shape)


def _role(pos: int, owner: str, layer: Layer) -> str:
    return f"weight (argument {pos})" if owner == layer.name else f"constant of {owner} (bias)"


def attribute_differences(pairs):
    """Hyperparameters that differ on pairs of the same kind."""
    diffs, actions = [], []
    for pair in pairs:
        if pair.a.kind != pair.b.kind:
            continue
        ha, hb = hyperparameters(pair.a), hyperparameters(pair.b)
        for key in sorted(set(ha) & set(hb)):
            if _same(ha[key], hb[key]):
                continue
            diffs.append(Difference(HYPERPARAMETER, pair.position, pair.a.name, pair.b.name,
                                    f"{pair.b.kind} {key}: A {ha[key]}, B {hb[key]}", _change(ha[key], hb[key]),
                                    f"set {key} to {ha[key]}"))
            # Folding changes constants, never what an op's attributes say: repaired on every pair.
            actions.append(("attr", pair.b.name, key, ha[key]))
    return diffs, actions


def _same(x, y) -> bool:
    if isinstance(x, float) or isinstance(y, float):
        return bool(np.isclose(float(x), float(y), rtol=1e-6, atol=0))
    return x == y


def _change(x, y) -> float:
    """The largest relative change between two attribute values (1 when not numeric)."""
    try:
        a, b = np.atleast_1d(np.asarray(x, dtype=float)), np.atleast_1d(np.asarray(y, dtype=float))
        if a.shape != b.shape:
            return 1.0
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1.0)))
    except (TypeError, ValueError):
        return 1.0


def preprocessing_difference(loc, tolerance: float):
    """The images as each side is fed them, in one layout: a different preset, scaling or
    channel order shows here."""
    ta, tb = loc.taps
    a = _nchw(ta.batch, loc.pairing.a)
    b = _nchw(tb.batch, loc.pairing.b)
    if a.shape != b.shape:
        return [], []
    rel, mx = measure(a, b)
    if rel <= tolerance:
        return [], []
    detail = (f"input fed to B differs: max abs {mx:.3g} (A preset {loc.pairing.a.program.preset}, "
              f"B preset {loc.pairing.b.program.preset})")
    return [Difference(PREPROCESSING, -1, "input", "input", detail, rel, "feed B the images as A preprocesses them")], \
        [("input", None, None, None)]


def _nchw(batch: np.ndarray, side) -> np.ndarray:
    return batch.transpose(0, 3, 1, 2) if side.program.input.layout == "NHWC" and batch.ndim == 4 else batch


# ---------------------------------------------------------------- repairing
def apply_repairs(mod, actions, input_layout: str):
    """B's module with each repair action applied (constants restored, attributes set)."""
    from mutators.weight import replace_constant

    for action in actions:
        if action is None or action[0] == "input":
            continue
        kind, layer, key, value = action
        graph = layer_graph(mod, input_layout)
        if kind == "constant":
            const = dict(graph.constants[layer])[key]
            mod = replace_constant(mod, const, np.asarray(value, dtype=const.value.numpy().dtype))
        else:
            mod = set_attribute(mod, layer, key, value)
    return mod


def set_attribute(mod, binding: str, key: str, value):
    """B's module whose binding ``binding`` calls its op with attribute ``key`` = ``value``."""
    import tvm_ffi
    from tvm import relax

    from mutators.base import replace_main

    func = mod["main"]
    builder = relax.BlockBuilder()  # infers the new call's type (and refuses a call that no longer fits)
    blocks = []
    for block in func.body.blocks:
        bindings = []
        for b in block.bindings:
            if isinstance(b, relax.VarBinding) and b.var.name == binding:
                call = b.value
                new = builder.normalize(relax.Call(call.op, call.args, with_attr(call.attrs, key, value)))
                if not tvm_ffi.structural_equal(new.ty, b.var.ty):
                    raise ValueError(f"{binding} with {key}={value} gives {new.ty}, not {b.var.ty}")
                b = relax.VarBinding(b.var, new)
            bindings.append(b)
        blocks.append(type(block)(bindings))
    new = relax.Function(func.params, relax.SeqExpr(blocks, func.body.body), ret_ty=func.ret_ty, attrs=func.attrs)
    return replace_main(mod, new)


def analyse_and_repair(loc) -> ConversionReport:
    """Every difference of the conversion, the repairs applied to B, and B run again."""

    pairing = loc.pairing
    if pairing.same_program:
        raise InputError("--repair analyses a conversion: A and B here are one program (same model and "
                         "import path); give two import paths or a model= file")
    ga, gb = pairing.a.graph, pairing.b.graph
    d1, a1 = preprocessing_difference(loc, loc.tolerance)
    d2, a2 = parameter_differences(loc.pairs, ga, gb, loc.tolerance)
    d3, a3 = attribute_differences(loc.pairs)
    diffs, actions = d1 + d2 + d3, a1 + a2 + a3
    report = ConversionReport(diffs)
    if any(not d.applied for d in diffs):
        report.notes.append("constants of approximate pairs (ops folded on one side) are listed, not restored")
    applied = [d for d, act in zip(diffs, actions) if act is not None]
    out_a, out_b = loc.outputs
    batch = loc.taps[1].batch
    if any(act is not None and act[0] == "input" for act in actions):
        batch = _like(loc.taps[0].batch, pairing.a, pairing.b)
    try:
        after = loc.taps[1].repaired(actions, batch).run([])["__output__"].reshape(len(out_a), -1)
        after = drop_background(pairing, "b", after)
    except InputError:
        raise
    except Exception as err:  # an attribute the op refuses, a shape that no longer fits
        report.notes.append(f"repair could not be applied: {err}".splitlines()[0])
        return report
    top_a = out_a.argmax(axis=1)
    report.repair = Repair([f"{d.layer_b}: {d.repair}" for d in applied],
                           float((top_a == out_b.argmax(axis=1)).mean()), float((top_a == after.argmax(axis=1)).mean()),
                           len(out_a), measure(out_a, out_b)[0], measure(out_a, after)[0])
    return report


def _like(batch_a: np.ndarray, side_a, side_b) -> np.ndarray:
    """A's preprocessed images in B's input layout."""
    x = _nchw(batch_a, side_a)
    return x.transpose(0, 2, 3, 1) if side_b.program.input.layout == "NHWC" and x.ndim == 4 else x
