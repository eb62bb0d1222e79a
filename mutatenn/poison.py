"""Uninitialised reads made deterministic: every buffer a kernel writes starts as poison.

A loop-bound mutant (``tir_loop_min_plus1``, ``tir_loop_extent_minus1``) can skip part of
a buffer; its readers then see whatever that memory held before (the VM reuses storage
between kernels), so its outputs, and its verdict, change from run to run although no
access leaves a buffer. In checked builds (a stack's ``bounds_check = true``) the
`poison_pass` makes each such program behave the same in every run:

* at a kernel's entry, every output buffer it writes (the trailing buffer parameters its
  body stores to: the destination-passing outputs of ``call_tir``, which covers every
  intermediate the VM allocates, each being some kernel's output) and every buffer it
  allocates itself is filled with `POISON`: a quiet NaN with a payload no arithmetic
  produces for floats, a sentinel for 32- and 64-bit integers;
* at its exit, each output buffer is checked element by element, comparing bit patterns
  (a ``reinterpret``, not ``isnan``: a NaN the model computes is not poison): an element
  still holding the poison raises ``RuntimeError`` with a message that begins with `MARK`
  and names the kernel and the buffer. The check fires at the kernel that left elements
  unwritten, before any reader sees them; a kernel whose written value was computed from
  an unwritten element of its own scratch buffer carries the payload on (x86 keeps a NaN
  operand's payload) and is reported the same way.

Booleans and 8- and 16-bit integers get no poison: every bit pattern of them is a value a
program computes routinely (a quantised model's int8 activations span all 256), so a
sentinel would be mistaken for an unwritten element. A program with such an unwritten
buffer keeps reading whatever memory holds.

FoldConstant runs the kernels of constant subgraphs (a weight's transpose) at build time:
`folding_passes` poisons every PrimFunc for that evaluation alone, so a constant kernel
that leaves elements unwritten fails the build with the same message (naming FoldConstant)
instead of baking whatever memory held into a constant.

The pass runs after the schedule passes (`mutatenn.build.pipeline`): the fill and check
loops are plain serial loops at the top of the kernel's root block, around the scheduled
body, so no schedule rule has to accept them and no ``parallel`` closure can lose a
failed check. A program that writes every element it should computes exactly what it
computes without them: the fill is overwritten, the check reads and writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MARK", "POISON", "PoisonReport", "poison_prim_func", "poison_module", "poison_pass", "folding_passes",
           "is_uninitialized_error", "uninitialized_message"]

# The first words of every message a failing check raises (`is_uninitialized_error` looks for them).
MARK = "MutateNN uninitialized read"
ERROR_KIND = "RuntimeError"
# dtype -> (the integer type of its bits, the poison's bit pattern). Float poisons are
# quiet NaNs whose payload spells DEAD; integer sentinels are 0xDEADBEEF.
POISON = {
    "float32": ("uint32", 0x7FC0DEAD),
    "float64": ("uint64", 0x7FF8DEADDEADDEAD),
    "float16": ("uint16", 0x7EAD),
    "bfloat16": ("uint16", 0x7FED),
    "int32": ("int32", -0x21524111),  # 0xDEADBEEF
    "uint32": ("uint32", 0xDEADBEEF),
    "int64": ("int64", -0x2152411021524111),  # 0xDEADBEEFDEADBEEF
    "uint64": ("uint64", 0xDEADBEEFDEADBEEF),
}


@dataclass
class PoisonReport:
    """What `poison_module` did, per PrimFunc (by name): buffers filled and outputs checked."""

    filled: dict[str, list[str]] = field(default_factory=dict)
    checked: dict[str, list[str]] = field(default_factory=dict)


def is_uninitialized_error(text: str) -> bool:
    """Whether an error's text is a failed poison check of this module."""
    return MARK in (text or "")


def uninitialized_message(text: str) -> str:
    """The poison check's own line from an error's text."""
    from .bounds import marked_line

    return marked_line(text, MARK)


def poison_pass(report: PoisonReport | None = None):
    """The Relax-pipeline module pass (insert it after the schedule passes, before the VM lowering)."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="MutateNNPoison")
    def _pass(mod, _ctx):
        return poison_module(mod, report)

    return _pass


def folding_passes(fold):
    """``fold`` (the FoldConstant pass) between a pass that poisons every PrimFunc and one
    that puts the unpoisoned PrimFuncs back: FoldConstant runs the kernels of constant
    subgraphs at build time (a weight's transpose), so a mutant of such a kernel that
    leaves elements unwritten would bake whatever memory held into a constant. Poisoned,
    the evaluation raises `MARK` (the build fails with it, the same in every build); the
    kernels left for run time get their poison after scheduling (`poison_pass`)."""
    import tvm

    from .schedules import with_functions

    originals: dict = {}

    @tvm.transform.module_pass(opt_level=0, name="MutateNNPoisonFolded")
    def _poison_folded(mod, _ctx):
        originals.clear()
        originals.update({gv.name_hint: f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)})
        return poison_module(mod, when=FOLDING)

    @tvm.transform.module_pass(opt_level=0, name="MutateNNUnpoisonFolded")
    def _unpoison(mod, _ctx):
        return with_functions(mod, {gv: originals[gv.name_hint] for gv, f in mod.functions.items()
                                    if isinstance(f, tvm.tirx.PrimFunc) and gv.name_hint in originals})

    return [_poison_folded, fold, _unpoison]


# What a failed check says of the element (an unwritten scratch element's poison carries on).
UNWRITTEN = "element never written (or computed from one never written)"
# How a check that fired while FoldConstant evaluated a constant kernel says so.
FOLDING = " (run by FoldConstant at build time)"


def poison_module(mod, report: PoisonReport | None = None, when: str = ""):
    """``mod`` with every PrimFunc poisoned and checked (Relax functions left as they are);
    ``when`` ends each check's message."""
    import tvm

    from .schedules import with_functions

    changed = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            new, filled, checked = _poison(func, gv.name_hint, when)
            if report is not None:
                report.filled[gv.name_hint], report.checked[gv.name_hint] = filled, checked
            if filled:
                changed[gv] = new
    return with_functions(mod, changed)


def poison_prim_func(func, name: str = ""):
    """One PrimFunc with its poison fill and check (``name`` appears in the messages)."""
    from .bounds import _func_name

    return _poison(func, name or _func_name(func))[0]


# ---------------------------------------------------------------- the rewrite

def _poison(func, name: str, when: str = ""):
    """(the poisoned PrimFunc, names of the buffers filled, names of the outputs checked)."""
    import tvm_ffi
    from tvm import s_tir

    outputs = [b for b in _outputs(func) if _poisonable(b)]
    filled_names = [b.name for b in outputs]

    def on_block(block):
        scratch = [b for b in block.alloc_buffers if _poisonable(b)]
        if not scratch:
            return block
        filled_names.extend(b.name for b in scratch)
        return _with_body(block, _seq([_fill(b) for b in scratch] + [block.body]))

    body = tvm_ffi.structural_map(func.body, (s_tir.SBlock, on_block))
    if outputs:
        fills = [_fill(b) for b in outputs]
        checks = [_check(b, name, when) for b in outputs]
        stmts = [c for c, _ in checks]
        if isinstance(body, s_tir.SBlockRealize):  # inside the root block: its buffers are in scope there
            root = body.block
            root = _with_body(root, _seq(fills + [root.body] + stmts), [c for _, c in checks])
            body = _with_realize(body, root)
        else:
            body = _seq(fills + [body])  # no root block to hold the counters: poisoned, not checked
            outputs = []
    if not filled_names:
        return func, [], []
    return func.with_body(body), filled_names, [b.name for b in outputs]


def _outputs(func) -> list:
    """The buffer parameters ``call_tir`` passes as outputs: the trailing ones the body
    stores to (an input the body also wrote would come before them; scalar parameters,
    a call's ``tir_vars``, come after them)."""
    import tvm_ffi
    from tvm import tirx

    stored: list = []
    tvm_ffi.structural_walk(func.body, (tirx.BufferStore, lambda s: stored.append(s.buffer)))
    buffers = [p for p in func.params if isinstance(getattr(p, "ty", None), tirx.BufferType)]
    out = []
    for param in reversed(buffers):
        if not any(param.same_as(b) for b in stored):
            break
        out.append(param)
    return list(reversed(out))


def _poisonable(buffer) -> bool:
    return str(buffer.dtype) in POISON and all(_is_int(d) for d in buffer.shape)


def _is_int(expr) -> bool:
    from tvm import tirx

    return isinstance(expr, tirx.IntImm)


def _poison_value(dtype: str):
    from tvm import tirx

    bits, pattern = POISON[dtype]
    value = tirx.const(pattern, bits)
    return value if bits == dtype else tirx.reinterpret(dtype, value)


def _nest(buffer, make_body):
    """Serial loops over every element of ``buffer`` around ``make_body(indices)``."""
    from tvm import tirx

    loop_vars = [tirx.Var(f"poison_i{axis}", str(extent.ty.dtype) if hasattr(extent, "ty") else "int64")
                 for axis, extent in enumerate(buffer.shape)]
    stmt = make_body(loop_vars)
    for var, extent in reversed(list(zip(loop_vars, buffer.shape))):
        stmt = tirx.For(var, tirx.const(0, str(var.ty.dtype)), extent, tirx.ForKind.SERIAL, stmt)
    return stmt


def _fill(buffer):
    from tvm import tirx

    value = _poison_value(str(buffer.dtype))
    return _nest(buffer, lambda idx: tirx.BufferStore(buffer, value, idx))


def _check(buffer, func_name: str, when: str = ""):
    """(the check of one output, the one-element counter buffer it needs). It counts the
    elements holding the poison in a loop with no branch, then asserts the count is 0:
    one assert per element made LLVM take a minute over a 256 x 64 transpose."""
    from tvm import tirx
    from tvm.ir.expr import StringImm

    dtype = str(buffer.dtype)
    bits, pattern = POISON[dtype]
    message = f"{MARK}: kernel {func_name}{when} buffer {buffer.name}: {UNWRITTEN}"
    counter = tirx.decl_buffer((1,), "int32", f"{buffer.name}_poisoned", scope="local")
    zero = [tirx.const(0, "int64")]

    def body(idx):
        load = tirx.BufferLoad(buffer, idx)
        seen = load if bits == dtype else tirx.reinterpret(bits, load)
        hit = tirx.Cast("int32", tirx.EQ(seen, tirx.const(pattern, bits)))
        return tirx.BufferStore(counter, tirx.BufferLoad(counter, zero) + hit, zero)

    # AssertStmt takes (condition, kind, parts) positionally (TVM-NOTES, `mutatenn.bounds`).
    fired = tirx.AssertStmt(tirx.EQ(tirx.BufferLoad(counter, zero), tirx.const(0, "int32")), StringImm(ERROR_KIND),
                            [StringImm(message)])
    return tirx.SeqStmt([tirx.BufferStore(counter, tirx.const(0, "int32"), zero), _nest(buffer, body), fired]), counter


def _seq(stmts: list):
    from tvm import tirx

    return stmts[0] if len(stmts) == 1 else tirx.SeqStmt(stmts)


def _with_body(block, body, more_buffers=()):
    from tvm import s_tir

    return s_tir.SBlock(block.iter_vars, block.reads, block.writes, block.name_hint, body, block.init,
                        [*block.alloc_buffers, *more_buffers], block.match_buffers, block.annotations)


def _with_realize(realize, block):
    from tvm import s_tir

    return s_tir.SBlockRealize(realize.iter_values, realize.predicate, block)
