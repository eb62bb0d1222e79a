"""Lower float precision: fp16 (and bf16 where the runtime and the CPU have it).

- TVM: Relax ``ToMixedPrecision`` after ``ConvertToDataflow`` (it rewrites dataflow
  blocks only). With ``out_dtype="float32"`` TVM 0.27 casts inputs and weights to float16
  and keeps conv2d/matmul accumulation in float32 (their ``out_dtype``), casting the results
  back to float16; its op policy is fixed (no block-list). It makes float16 only, so bf16
  is refused for TVM.
- ``keep_fp32`` (TVM): ToMixedPrecision rewrites dataflow blocks only, and a variable that
  leaves a dataflow block keeps its declared dtype (it is cast back to float32). So the kept
  bindings are moved out of the dataflow block into plain binding blocks of their own
  (`split_kept`), with the weight transposes and reshapes that feed them from constants
  alone, before ToMixedPrecision runs: they compute in float32 on their original float32
  constants, their float32 inputs are the casts ToMixedPrecision puts at the block's end
  (so the layer feeding a kept one hands it its float32 result, not one rounded to
  float16), and the next block casts their results to float16 where its ops want it.
  Checked on TVM 0.27's to_mixed_precision.cc: binding blocks are skipped, and a plain
  variable bound in a dataflow block is cast back to its declared dtype. That cast fails
  for a tuple item (a batch_norm's ``x[0]``: "The type is not populated"), which is why
  such bindings are lifted out of the block first (`lift_tuple_items`; this also lets the
  localiser expose batch_norm layers of an fp16 build).
- ONNX Runtime: onnxconverter-common's ``convert_float_to_float16`` with inputs and
  outputs kept float32 (``keep_io_types``). Known traps: Resize with ``keep_io_types``,
  and Cast nodes left in float32; a model it cannot convert is that variant's error.
- PyTorch eager: the module and its input cast to float16 or bfloat16, output back to float32.
"""
from __future__ import annotations

import functools

TVM_PRECISIONS = ("fp32", "fp16")


def relax_fp16(mod, keep_fp32: tuple = ()):
    """``mod`` computing in float16 with float32 accumulation (inputs and output stay float32);
    the bindings of ``main`` named in ``keep_fp32`` compute in float32."""
    from tvm import relax

    check_kept(mod, keep_fp32)
    renamed = _alias_targets(mod)
    if not all(isinstance(block, relax.DataflowBlock) for block in mod["main"].body.blocks):
        # Only when needed: it also folds ``out = lv6`` into lv6's binding, so an exposed
        # layer would become a block output that ToMixedPrecision keeps in float32.
        mod = relax.transform.ConvertToDataflow()(mod)
    after = set(binding_names(mod))
    split = lift_tuple_items(split_kept(mod, tuple(n if n in after else _final_name(n, renamed) for n in keep_fp32)))
    # Hand-made modules (exposed layers, the new blocks) are typed before ToMixedPrecision
    # reads them; each block after a split starts with an unused cast of the input, which
    # dead-code elimination drops.
    mixed = relax.transform.ToMixedPrecision(out_dtype="float32")(relax.transform.Normalize()(split))
    return mixed if split is mod else relax.transform.DeadCodeElimination()(mixed)


def binding_names(mod) -> list[str]:
    """The names of ``main``'s variable bindings (the localiser's layers are among them)."""
    from tvm import relax

    return [b.var.name for block in mod["main"].body.blocks for b in block.bindings
            if isinstance(b, relax.VarBinding)]


def _alias_targets(mod) -> dict[str, str]:
    """``{"lv24": "gv"}`` for each ``gv = lv24`` of ``main``: ConvertToDataflow folds such an
    alias, so the binding the localiser calls lv24 is named gv afterwards."""
    from tvm import relax

    return {b.value.name: b.var.name for block in mod["main"].body.blocks for b in block.bindings
            if isinstance(b, relax.VarBinding) and isinstance(b.value, relax.Var)}


def _final_name(name: str, renamed: dict[str, str]) -> str:
    seen = {name}
    while name in renamed and renamed[name] not in seen:
        name = renamed[name]
        seen.add(name)
    return name


def check_kept(mod, keep_fp32: tuple) -> None:
    """Every kept name is a binding of ``main``: one line naming those that are not."""
    from ..errors import InputError

    names = set(binding_names(mod))
    unknown = [n for n in keep_fp32 if n not in names]
    if unknown:
        raise InputError(f"keep_fp32: main has no binding named {', '.join(unknown)} "
                         "(`mutatenn localize` lists its layers, e.g. lv12)")


def split_kept(mod, keep_fp32: tuple = ()):
    """``mod`` with the named bindings of ``main`` (and what feeds them from constants alone,
    and the tuple a kept ``x[0]`` reads) moved into plain binding blocks between the
    dataflow blocks; variables used across the new block boundaries become plain variables.
    ``mod`` itself when nothing is to move. A variable that would cross a boundary bound to
    a tuple item (or to a variable) moves with the kept bindings (see `lift_tuple_items`)."""
    from tvm import relax

    from mutators.base import replace_main

    check_kept(mod, keep_fp32)
    func = mod["main"]
    table: dict = {}  # an old variable -> its plain replacement
    blocks, moved_any = [], False
    for block in func.body.blocks:
        if not isinstance(block, relax.DataflowBlock):
            blocks.append(relax.BindingBlock([_substituted(b, b.var, table) for b in block.bindings]))
            continue
        segments, crossing = _moved_segments(block, _kept_vars(block, set(keep_fp32), set(func.params)))
        moved_any = moved_any or any(kept for kept, _ in segments)
        for kept, part in segments:
            new = []
            for b in part:
                var = b.var
                if (kept or var in crossing) and isinstance(var, relax.DataflowVar):
                    var = relax.Var(var.name, var.ty)
                new.append(_substituted(b, var, table))
            blocks.append(relax.BindingBlock(new) if kept else relax.DataflowBlock(new))
    if not moved_any:
        return mod
    body = relax.SeqExpr(blocks, _substitute(func.body.body, table))
    return replace_main(mod, relax.Function(func.params, body, ret_ty=func.ret_ty, attrs=func.attrs))


def lift_tuple_items(mod):
    """``mod`` with each plain variable that a dataflow block binds to a tuple item (or to a
    variable bound to one) bound after the block instead, to the item of the tuple made a
    plain variable: ``lv4_exposed = lv4`` with ``lv4 = lv3[0]`` (a batch_norm's output, as
    the localiser exposes it) becomes ``lv4_exposed = lv3[0]`` after the block.

    Why: ToMixedPrecision casts a plain variable back to its declared dtype, and for a tuple
    item it does so before the item's type is inferred, which fails ("The type is not
    populated"). A tuple-valued op (batch_norm) keeps float32 whether its variable is plain
    or not, so nothing computes differently. ``mod`` itself when there is no such binding."""
    from tvm import relax

    from mutators.base import replace_main

    func = mod["main"]
    table: dict = {}
    blocks, lifted_any = [], False
    for block in func.body.blocks:
        if not isinstance(block, relax.DataflowBlock):
            blocks.append(relax.BindingBlock([_substituted(b, b.var, table) for b in block.bindings]))
            continue
        items = _tuple_items(block)
        lifted = {b.var: items[b.var] for b in block.bindings
                  if not isinstance(b.var, relax.DataflowVar) and b.var in items}
        if not lifted:
            blocks.append(relax.DataflowBlock([_substituted(b, b.var, table) for b in block.bindings]))
            continue
        lifted_any = True
        inner = dict(table)  # inside the block a lifted variable is read from a dataflow copy
        tuples = {item.tuple_value for item in lifted.values()}
        kept, after = [], []
        for b in block.bindings:
            if b.var in lifted:
                copy = relax.DataflowVar(b.var.name, b.var.ty)
                kept.append(_substituted(b, copy, inner))
                continue
            var = relax.Var(b.var.name, b.var.ty) if b.var in tuples and isinstance(b.var, relax.DataflowVar) else b.var
            kept.append(_substituted(b, var, inner))
            if not var.same_as(b.var):
                table[b.var] = inner[b.var] = var
        for var, item in lifted.items():
            after.append(relax.VarBinding(var, relax.TupleGetItem(table.get(item.tuple_value, item.tuple_value),
                                                                  item.index)))
        blocks += [relax.DataflowBlock(kept), relax.BindingBlock(after)]
    if not lifted_any:
        return mod
    body = relax.SeqExpr(blocks, _substitute(func.body.body, table))
    return replace_main(mod, relax.Function(func.params, body, ret_ty=func.ret_ty, attrs=func.attrs))


def _tuple_items(block) -> dict:
    """Variable -> the ``t[i]`` it is bound to, directly or through variables, where ``t``
    is bound in ``block``."""
    from tvm import relax

    bound = {b.var: b.value for b in block.bindings}
    items = {}
    for var, value in bound.items():
        seen = 0
        while isinstance(value, relax.Var) and value in bound and seen < len(bound):
            value, seen = bound[value], seen + 1
        if isinstance(value, relax.TupleGetItem) and value.tuple_value in bound:
            items[var] = value
    return items


def _moved_segments(block, kept: set) -> tuple[list, set]:
    """The block's runs of bindings (moved out or not) and the variables read across runs,
    once every crossing variable bound to a projection has been moved out."""
    from tvm import relax

    projection = {b.var for b in block.bindings if isinstance(b.value, (relax.TupleGetItem, relax.Var))}
    if not kept:
        return [(False, list(block.bindings))], set()
    while True:
        segments = _segments(list(block.bindings), kept)
        where = {b.var: i for i, (_, part) in enumerate(segments) for b in part}
        crossing = {v for i, (_, part) in enumerate(segments) for b in part
                    for v in relax.analysis.free_vars(b.value) if where.get(v, i) != i}
        more = {v for v in crossing if v in projection and v not in kept}
        if not more:
            return segments, crossing
        kept |= more


def _kept_vars(block, names: set, params: set) -> set:
    """The variables of ``block`` to compute in float32: the named ones, the tuple a named
    ``x[i]`` reads, and bindings computed from constants alone that feed them."""
    from tvm import relax

    bound = {b.var: b for b in block.bindings}
    dependent = set(params)
    for b in block.bindings:
        if any(v in dependent or v not in bound for v in relax.analysis.free_vars(b.value)):
            dependent.add(b.var)
    kept, todo = set(), [b.var for b in block.bindings if b.var.name in names]
    while todo:
        var = todo.pop()
        if var in kept:
            continue
        kept.add(var)
        value = bound[var].value
        if isinstance(value, relax.TupleGetItem) and value.tuple_value in bound:
            todo.append(value.tuple_value)
        todo.extend(v for v in relax.analysis.free_vars(value) if v in bound and v not in dependent)
    return kept


def _segments(bindings: list, kept: set) -> list[tuple[bool, list]]:
    """Runs of consecutive bindings, each marked kept (float32) or not."""
    segments: list[tuple[bool, list]] = []
    for b in bindings:
        flag = b.var in kept
        if not segments or segments[-1][0] != flag:
            segments.append((flag, []))
        segments[-1][1].append(b)
    return segments


def _substituted(binding, var, table: dict):
    """``binding`` bound to ``var`` with its value's variables replaced as ``table`` says."""
    from tvm import relax

    value = _substitute(binding.value, table)
    if not var.same_as(binding.var):
        table[binding.var] = var
    return relax.VarBinding(var, value)


def _substitute(expr, table: dict):
    return _substituter()(table).visit_expr(expr) if table else expr


@functools.cache
def _substituter():
    """A Relax mutator class replacing variables by a table (made once, TVM imported lazily)."""
    from tvm.relax.expr_functor import PyExprMutator, mutator

    @mutator
    class Substitute(PyExprMutator):
        def __init__(self, table: dict):
            super().__init__()
            self.table = table

        def visit_dataflow_var_(self, var):
            return self.table.get(var, var)

        def visit_var_(self, var):
            return self.table.get(var, var)

    return Substitute


def onnx_fp16(model):
    """The ONNX model in float16, its inputs and outputs kept float32."""
    import warnings

    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about every value it clips to the float16 range
        return float16.convert_float_to_float16(model, keep_io_types=True)


def torch_dtype(precision: str):
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def torch_cast(module, precision: str):
    """A copy of the torch module whose parameters and buffers are in the precision's dtype."""
    import copy

    return copy.deepcopy(module).to(torch_dtype(precision))
