"""Reading chosen layers of a variant: one `Tap` class per runner, by name (`TAPS`).

Marking every layer as an output breaks fusion and holds every activation at once; a tap
instead exposes a few layers at a time (a *round*: one build or session, one pass over the
images), so memory stays bounded on large models. A TVM tap rebuilds the program with the
chosen Relax bindings as extra outputs of ``main``, for the variant's own target and build
options, so what is read is what that stack computes; native taps (`native`) read PyTorch
and ONNX Runtime the same way.
"""
from __future__ import annotations

from importlib import import_module

import numpy as np

from ..errors import InputError
from .layers import LayerGraph

# runner name -> "module:Class" of its tap; a runner without one cannot be localised.
TAPS = {
    "tvm": "mutatenn.localize.capture:RelaxTap",
    "torch": "mutatenn.localize.native:TorchTap",
    "onnxruntime": "mutatenn.localize.native:OnnxTap",
}


def tap_class(variant, side: str) -> type:
    """The tap for a variant's runner, or one line saying which runners have one."""
    if variant.kind not in TAPS:
        raise InputError(f"--{side} {variant.text!r}: localize reads layers of {', '.join(TAPS)} variants, "
                         f"not {variant.kind}; compare it with `mutatenn compare`")
    module, _, name = TAPS[variant.kind].partition(":")
    cls = getattr(import_module(module), name)
    cls.check(variant, side)
    return cls


class Tap:
    """One variant of a program whose layers can be read: ``model`` is what it runs (a
    Relax module, an ONNX model, a torch module), ``batch`` the preprocessed images."""

    builds_programs = False  # True: a round compiles (its time is build time)
    reduces = False  # True: B's program can be cut into a runnable Relax subgraph (--reduce)
    repairs = False  # True: `repaired` applies conversion repairs to what it runs (--repair)

    def __init__(self, label: str, variant, program, model, batch: np.ndarray):
        self.label, self.variant, self.program, self.model, self.batch = label, variant, program, model, batch
        self.builds = 0
        self.build_s = 0.0
        self.cache: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------ class-level hooks
    @classmethod
    def check(cls, variant, side: str) -> None:
        """Refuse a variant this tap cannot read (default: any)."""

    @classmethod
    def model_of(cls, program):
        """What this tap runs for a loaded program (its Relax module, ONNX model, ...)."""
        raise NotImplementedError

    @classmethod
    def layer_graph(cls, program, model) -> LayerGraph:
        raise NotImplementedError

    # ------------------------------------------------------------ instance hooks
    def run(self, names: list[str], rows: list[int] | None = None) -> dict[str, np.ndarray]:
        """One round: ``names`` exposed, the images (``rows``: those only) run; layer name ->
        values stacked over images, plus ``"__output__"``."""
        raise NotImplementedError

    def repaired(self, actions, batch: np.ndarray) -> "Tap":
        """This variant with conversion repairs applied (`conversion`), fed ``batch``."""
        raise InputError(f"--b {self.variant.text!r}: repairs apply to a TVM or ONNX Runtime variant")

    def cut(self, first: str, last: str):
        """Layers ``first`` to ``last`` as a program of their own: (subgraph, its parameter
        names, the names of the layers or bindings taken) (`reduce`)."""
        raise InputError(f"--b {self.variant.text!r}: --reduce cuts a TVM or ONNX Runtime program")

    def run_subgraph(self, subgraph, inputs: list[np.ndarray]) -> np.ndarray:
        """Run a `cut` per image (``inputs``: one (N, ...) array per parameter)."""
        raise NotImplementedError

    def save_subgraph(self, subgraph, folder, stem: str) -> list[str]:
        """Write a `cut` to ``folder`` as files named ``stem.*``; returns their names."""
        raise NotImplementedError

    # ------------------------------------------------------------ shared
    def capture(self, names: list[str], rows: list[int]) -> dict[str, np.ndarray]:
        """The named layers on images ``rows`` (one round for those not read before)."""
        todo = [n for n in dict.fromkeys(names) if n not in self.cache]
        if todo:
            self.cache.update({k: v for k, v in self.run(todo, rows).items() if k != "__output__"})
        return {n: self.cache[n] for n in names}


def expose(mod, names: list[str]):
    """A copy of ``mod`` whose ``main`` returns ``(its output, *layers named)``: each
    exposed dataflow variable is bound to an output variable at the end of its block."""
    from tvm import relax

    from mutators.base import replace_main

    func = mod["main"]
    wanted = list(dict.fromkeys(names))
    found: dict = {}
    blocks = []
    for block in func.body.blocks:
        extra = []
        for binding in block.bindings:
            name = getattr(binding.var, "name", "")
            if name in wanted and name not in found:
                if isinstance(block, relax.DataflowBlock):
                    out = relax.Var(f"{name}_exposed", binding.var.ty)
                    extra.append(relax.VarBinding(out, binding.var))
                    found[name] = out
                else:
                    found[name] = binding.var
        blocks.append(relax.DataflowBlock(list(block.bindings) + extra) if extra else block)
    missing = [n for n in wanted if n not in found]
    if missing:
        raise ValueError(f"main has no binding named {', '.join(missing)}")
    outs = [found[n] for n in wanted]
    body = relax.SeqExpr(blocks, relax.Tuple([func.body.body, *outs]))
    ret = relax.TupleType([func.ret_ty, *[o.ty for o in outs]])
    return replace_main(mod, relax.Function(func.params, body, ret_ty=ret, attrs=func.attrs))


def compiled_main(variant, program, mod):
    """``main`` of ``mod`` built for the variant's target and build options, and its device."""
    import tvm
    from tvm import relax

    from ..runners import make_runner

    runner = make_runner(variant, program, mod=mod)
    runner.prepare()
    dev = tvm.cuda(0) if variant.target.device == "cuda" else tvm.cpu(0)
    return relax.VirtualMachine(runner.executable, dev)["main"], dev


class RelaxTap(Tap):
    """A TVM variant: the program (or a mutant) rebuilt per round with bindings exposed."""

    builds_programs = True
    reduces = True
    repairs = True

    @classmethod
    def check(cls, variant, side: str) -> None:
        if variant.target.device == "rpc":
            raise InputError(f"--{side} {variant.text!r}: layers cannot be read back over TVM RPC "
                             "(a tuple output comes back as a reference); localize on a local target")

    @classmethod
    def model_of(cls, program):
        return program.mod

    @classmethod
    def layer_graph(cls, program, model) -> LayerGraph:
        from .layers import layer_graph

        return layer_graph(model, program.input.layout)

    def run(self, names: list[str], rows: list[int] | None = None) -> dict[str, np.ndarray]:
        import time

        import tvm

        start = time.perf_counter()
        main, dev = compiled_main(self.variant, self.program, expose(self.model, names))
        self.build_s += time.perf_counter() - start
        self.builds += 1
        batch = self.batch if rows is None else self.batch[rows]
        values: dict[str, list] = {n: [] for n in ["__output__", *names]}
        for i in range(len(batch)):
            out = main(tvm.runtime.tensor(np.ascontiguousarray(batch[i : i + 1]), device=dev))
            for key, item in zip(values, out):
                values[key].append(item.numpy())
        return {k: np.concatenate(v, axis=0) for k, v in values.items()}

    def cut(self, first: str, last: str):
        from .reduce import cut

        return cut(self.model, first, last)

    def run_subgraph(self, subgraph, inputs: list[np.ndarray]) -> np.ndarray:
        import tvm

        main, dev = compiled_main(self.variant, self.program, subgraph)
        rows = []
        for i in range(len(inputs[0]) if inputs else 1):
            rows.append(main(*[tvm.runtime.tensor(np.ascontiguousarray(x[i : i + 1]), device=dev) for x in inputs]).numpy())
        return np.concatenate(rows, axis=0)

    def save_subgraph(self, subgraph, folder, stem: str) -> list[str]:
        """Relax text to read, and JSON with its constants to load (`tvm.ir.load_json`)."""
        import tvm

        (folder / f"{stem}.py").write_text(subgraph.script(show_meta=False))
        (folder / f"{stem}.json").write_text(tvm.ir.save_json(subgraph))
        return [f"{stem}.py", f"{stem}.json"]

    def repaired(self, actions, batch: np.ndarray) -> "RelaxTap":
        from .conversion import apply_repairs

        mod = apply_repairs(self.model, actions, self.program.input.layout)
        return RelaxTap(f"{self.label}-repaired", self.variant, self.program, mod, batch)
