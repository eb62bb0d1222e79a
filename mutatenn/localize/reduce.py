"""A minimal failing subgraph (`--reduce`): the shortest contiguous run of B's bindings,
starting at the first diverging layer, that still diverges from A when its inputs are fed
with A's recorded activations. It is saved with its inputs, so it can be attached to a
bug report against a compiler or framework and run with nothing but TVM and NumPy."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .divergence import measure

SUBGRAPH, REFERENCE = "subgraph", "reference"  # file stems: .py and .json for Relax, .onnx for ONNX
EXPECTED, ACTUAL, NOTE = "expected.npy", "actual.npy", "NOTE.md"


@dataclass
class Reduction:
    """The subgraph found: its bindings, inputs, how far it diverges, and the files saved."""

    folder: Path
    bindings: list[str]
    inputs: list[str]  # parameter names, in order (files input_<name>.npy)
    output: str
    rel_l2: float
    max_abs: float
    tried: int  # subgraphs built on the way
    files: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return (f"reduced: {len(self.bindings)} layer(s) ({', '.join(self.bindings)}) fed with A's activations of "
                f"{', '.join(self.inputs)} still diverge: relative L2 {self.rel_l2:.3g}, max abs {self.max_abs:.3g} "
                f"({self.tried} subgraph(s) tried); saved in {self.folder}")

    def summary(self) -> dict:
        return {"folder": str(self.folder), "bindings": self.bindings, "inputs": self.inputs, "output": self.output,
                "rel_l2": self.rel_l2, "max_abs": self.max_abs, "tried": self.tried, "files": self.files,
                "text": self.text}


def binding_order(mod) -> list:
    """``main``'s bindings in order (every block)."""
    return [b for block in mod["main"].body.blocks for b in block.bindings]


def cut(mod, first: str, last: str):
    """The bindings from ``first`` to ``last`` as a module of their own: every variable they
    read that is bound before ``first`` (or is ``main``'s parameter) becomes a parameter;
    constant-only bindings they read are pulled in. Returns (module, parameter names, the
    names of the bindings taken)."""
    from tvm import relax
    from tvm.relax.analysis import free_vars
    from tvm.relax.expr_functor import PyExprMutator, mutator

    from mutators.base import replace_main

    bindings = binding_order(mod)
    names = [b.var.name for b in bindings]
    start, end = names.index(first), names.index(last)
    value = bindings[start].value
    if isinstance(value, relax.TupleGetItem) and getattr(value.tuple_value, "name", None) in names:
        start = min(start, names.index(value.tuple_value.name))  # batch_norm(...)[0]: start at the call
    chosen = _with_constant_inputs(bindings, start, end)
    defined = {b.var.name for b in chosen}
    externals: list = []
    for b in chosen:
        for v in free_vars(b.value):
            if v.name not in defined and all(v.name != e.name for e in externals):
                externals.append(v)
    params = [relax.Var(v.name, v.ty) for v in externals]
    remap = {v.name: p for v, p in zip(externals, params)}

    @mutator
    class _Rename(PyExprMutator):
        def visit_var_(self, op):
            return remap.get(op.name, op)

        def visit_dataflow_var_(self, op):
            return remap.get(op.name, op)

    builder = relax.BlockBuilder()
    with builder.function("main", params):
        with builder.dataflow():
            for b in chosen:
                remap[b.var.name] = builder.emit(_Rename().visit_expr(b.value), name_hint=b.var.name)
            out = builder.emit_output(remap[last])
        builder.emit_func_output(out)
    sub = builder.get()
    # Only the kernels the cut calls stay (a lowered program carries every PrimFunc).
    cut_mod = relax.transform.DeadCodeElimination(["main"])(replace_main(mod, sub["main"]))
    return cut_mod, [v.name for v in externals], [b.var.name for b in chosen]


def _with_constant_inputs(bindings, start: int, end: int) -> list:
    """Bindings ``start..end`` plus the earlier bindings computed from constants alone that they read."""
    from tvm import relax
    from tvm.relax.analysis import free_vars

    by_name = {b.var.name: (i, b) for i, b in enumerate(bindings)}
    take = set(range(start, end + 1))
    stack = list(take)
    while stack:
        for v in free_vars(bindings[stack.pop()].value):
            i, b = by_name.get(v.name, (None, None))
            if i is None or i in take:
                continue
            if not free_vars(b.value) and not isinstance(b.value, relax.Var):
                take.add(i)
    return [bindings[i] for i in sorted(take)]


def reduce_divergence(loc, folder: Path) -> Reduction:
    """Grow a run of B's layers from the first diverging one until, fed with A's activations,
    it diverges from A's activation of its last layer; save it."""
    pairing, first = loc.pairing, loc.search.first
    gb = pairing.b.graph
    b_to_a = {p.b.name: p.a.name for p in loc.pairs if p.exact}
    # An approximate pair differs by construction (folding): the cut grows to an exact one.
    order = [p for p in loc.pairs if p.position >= first.pair.position and p.exact]
    tried, best = 0, None
    tap = loc.taps[1]
    for pair in order:
        mod, params, bindings = tap.cut(first.pair.b.name, pair.b.name)
        inputs = [_activation(loc, gb, name, b_to_a) for name in params]
        expected = loc.taps[0].capture([pair.a.name], loc.rows)[pair.a.name]
        actual = tap.run_subgraph(mod, inputs)
        tried += 1
        rel, mx = measure(expected, actual.reshape(expected.shape))
        best = (pair, mod, params, bindings, inputs, expected, actual, rel, mx)
        if rel > loc.tolerance:
            break
    return _save(loc, folder, best, tried)


def _activation(loc, graph_b, name: str, b_to_a: dict) -> np.ndarray:
    """What a subgraph parameter is fed: the input images, or A's recorded activation of
    the paired layer (B's own when no exact pair names one)."""
    if name == graph_b.input_name:
        return loc.taps[1].batch[loc.rows]
    layer = graph_b.aliases.get(name, name)
    if layer in b_to_a:
        return loc.taps[0].capture([b_to_a[layer]], loc.rows)[b_to_a[layer]]
    return loc.taps[1].capture([layer], loc.rows)[layer]


def _save(loc, folder: Path, best, tried: int) -> Reduction:
    """The subgraph (Relax text and JSON with constants, or an ONNX file), A's matching
    subgraph for one program, the inputs, A's and B's outputs and a note."""
    pair, mod, params, bindings, inputs, expected, actual, rel, mx = best
    folder.mkdir(parents=True, exist_ok=True)
    files = []

    def keep(name: str, write) -> None:
        write(folder / name)
        files.append(name)

    files += loc.taps[1].save_subgraph(mod, folder, SUBGRAPH)
    if loc.pairing.same_program:
        ref = loc.taps[0].cut(loc.search.first.pair.a.name, pair.a.name)[0]
        files += loc.taps[0].save_subgraph(ref, folder, REFERENCE)
    for name, value in zip(params, inputs):
        keep(f"input_{name}.npy", lambda p, v=value: np.save(p, v))
    keep(EXPECTED, lambda p: np.save(p, expected))
    keep(ACTUAL, lambda p: np.save(p, actual))
    result = Reduction(folder, bindings, params, pair.b.name, rel, mx, tried, files)
    keep(NOTE, lambda p: p.write_text(_note(loc, result)))
    return result


def _note(loc, r: Reduction) -> str:
    p = loc.pairing
    inputs = ", ".join(f"`input_{n}.npy`" for n in r.inputs)
    mine = ", ".join(f"`{f}`" for f in r.files if f.startswith(SUBGRAPH))
    theirs = ", ".join(f"`{f}`" for f in r.files if f.startswith(REFERENCE))
    relax = "(`.py`: Relax text; `.json`: `tvm.ir.load_json`, constants included)" if ".json" in mine else ""
    built = f" with build options {p.b.variant.options.label()}" if p.b.variant.target is not None else ""
    return (f"# A minimal failing subgraph\n\nA: {p.a.text}\nB: {p.b.text} (model {p.model})\n\n"
            f"{mine}{' ' + relax if relax else ''}: B's {', '.join(r.bindings)} as a program of its own. It takes {inputs} "
            f"(one row per image, batch 1 per call: A's activations there) and returns B's `{r.output}`.\n"
            f"`{EXPECTED}` is A's value of that layer, `{ACTUAL}` what the subgraph gives: relative L2 "
            f"{r.rel_l2:.3g}, max abs {r.max_abs:.3g} (tolerance {loc.tolerance:g}).\n"
            + (f"{theirs}: the same part of A, for comparison.\n" if theirs else "")
            + f"\nRun with {p.b.variant.text}{built}.\n")
