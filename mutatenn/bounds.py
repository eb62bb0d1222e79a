"""Bounds checks of our own: every buffer access of every PrimFunc asserted in bounds.

TVM 0.27's ``tirx.instrument_bound_checkers`` inserts nothing on MutateNN's flow (its
pass needs buffer-bound annotations nothing adds any more; TVM-NOTES, "Bounds checks of
our own"). `bounds_check_pass` is a Relax-pipeline module pass that runs on the fused,
possibly mutated PrimFuncs while their buffers are still N-dimensional (before the TIR
lowering flattens them). Before each statement it puts one ``AssertStmt`` per buffer
access the statement makes: the store's own indices and those of every load in its value
(and in an ``if`` condition or a ``Bind`` value), each index ``0 <= i < extent`` of the
buffer's declared shape. A failing check raises ``IndexError`` at run time with a message
that begins with `MARK` and names the PrimFunc, the buffer and the access.

A load under a guard is checked only where the guard lets it run:
``if_then_else(c, A[i], 0)`` (the padding of a convolution) asserts
``not c or 0 <= i < n``, a load in the else branch asserts under ``not c``, and the same
holds for ``Select`` and for a ``Let`` whose variable an index uses. A store inside an
``if`` statement is checked inside that branch, so its guard holds by construction.

The checks read nothing and write nothing, so a program that stays in bounds computes
exactly what it computes without them (the default schedule accepts asserts before a
block's store: `mutatenn.schedules`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MARK", "BoundsReport", "instrument_prim_func", "instrument_module", "bounds_check_pass",
           "serial_checks_pass", "is_bounds_error", "bounds_message"]

# The first words of every message a failing check raises (`is_bounds_error` looks for them).
MARK = "MutateNN bounds check"
ERROR_KIND = "IndexError"
_MAX_INDEX_TEXT = 60


@dataclass
class BoundsReport:
    """What `instrument_module` did: checks inserted per PrimFunc (by name)."""

    checks: dict[str, int] = field(default_factory=dict)
    serialised: dict[str, int] = field(default_factory=dict)  # parallel / vectorized loops made serial

    @property
    def total(self) -> int:
        return sum(self.checks.values())


def is_bounds_error(text: str) -> bool:
    """Whether an error's text is a failed bounds check of this module."""
    return MARK in (text or "")


def marked_line(text: str, mark: str) -> str:
    """A check's own line, from ``mark`` on, in an error's text (a VM traceback may surround
    it); empty when no line carries the mark. Bounds and poison checks both report this way."""
    for line in (text or "").splitlines():
        if mark in line:
            return line[line.index(mark):].strip()
    return ""


def bounds_message(text: str) -> str:
    """The bounds check's own line from an error's text."""
    return marked_line(text, MARK)


def instrument_module(mod, report: BoundsReport | None = None):
    """``mod`` with every PrimFunc instrumented (Relax functions left as they are)."""
    import tvm

    from .schedules import with_functions

    changed = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            new, count = _instrument(func, gv.name_hint)
            if report is not None:
                report.checks[gv.name_hint] = count
            if count:
                changed[gv] = new
    return with_functions(mod, changed)


def instrument_prim_func(func, name: str = ""):
    """One PrimFunc with its bounds checks (``name`` appears in the messages)."""
    return _instrument(func, name or _func_name(func))[0]


def bounds_check_pass(report: BoundsReport | None = None):
    """The Relax-pipeline module pass (insert it after FuseTIR, before the schedule passes)."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="MutateNNBoundsCheck")
    def _pass(mod, _ctx):
        return instrument_module(mod, report)

    return _pass


def serial_checks_pass(report: BoundsReport | None = None):
    """The module pass that keeps checked loops serial (insert it after the schedule passes).

    TVM 0.27 drops a failed assert inside a ``parallel`` loop (the closure's error code is
    not returned by the parallel launch: the program runs on silently) and cannot build
    one inside a ``vectorized`` loop (LLVM refuses a vector branch condition). Every such
    loop whose body holds a bounds check runs serially instead: its iterations compute
    the same elements in the same way, one after another."""
    import tvm

    from .schedules import with_functions

    @tvm.transform.module_pass(opt_level=0, name="MutateNNBoundsSerial")
    def _pass(mod, _ctx):
        changed = {}
        for gv, func in mod.functions.items():
            if isinstance(func, tvm.tirx.PrimFunc):
                new, count = _serialise(func)
                if count:
                    changed[gv] = new
                    if report is not None:
                        report.serialised[gv.name_hint] = count
        return with_functions(mod, changed)

    return _pass


def _serialise(func):
    """(func with its checked parallel / vectorized loops serial, how many loops changed)."""
    import tvm_ffi
    from tvm import tirx

    count = [0]

    def on_for(loop):
        if loop.kind not in (tirx.ForKind.PARALLEL, tirx.ForKind.VECTORIZED) or not _has_check(loop.body):
            return loop
        count[0] += 1
        return tirx.For(loop.loop_var, loop.min, loop.extent, tirx.ForKind.SERIAL, loop.body, loop.thread_binding,
                        loop.annotations, getattr(loop, "step", None), loop.span)

    body = tvm_ffi.structural_map(func.body, (tirx.For, on_for))
    return (func.with_body(body), count[0]) if count[0] else (func, 0)


def _has_check(stmt) -> bool:
    import tvm_ffi
    from tvm import tirx

    def on_assert(node):
        return tvm_ffi.VisitInterrupt(node) if any(MARK in str(part) for part in node.message_parts) else None

    return tvm_ffi.structural_walk(stmt, (tirx.AssertStmt, on_assert)) is not None


# ---------------------------------------------------------------- the rewrite

def _func_name(func) -> str:
    attrs = func.attrs
    if attrs is not None and "global_symbol" in attrs:
        return str(attrs["global_symbol"])
    return "prim_func"


def _instrument(func, name: str):
    """(the instrumented PrimFunc, how many checks it got)."""
    import tvm_ffi
    from tvm import tirx

    count = [0]

    def before(stmt, accesses):
        asserts = [_assert(name, kind, buffer, indices, scope) for kind, buffer, indices, scope in _distinct(accesses)]
        asserts = [a for a in asserts if a is not None]
        if not asserts:
            return stmt
        count[0] += len(asserts)
        return tirx.SeqStmt([*asserts, stmt])

    def on_store(store):
        accesses = [("writes", store.buffer, list(store.indices), ())]
        for index in store.indices:
            accesses += _loads(index, ())
        accesses += _loads(store.value, ())
        return before(store, accesses)

    def on_if(stmt):
        return before(stmt, _loads(stmt.condition, ()))

    def on_bind(stmt):
        return before(stmt, _loads(stmt.value, ()))

    def on_evaluate(stmt):
        return before(stmt, _loads(stmt.value, ()))

    body = tvm_ffi.structural_map(func.body, [(tirx.BufferStore, on_store), (tirx.IfThenElse, on_if),
                                              (tirx.LetStmt, on_bind), (tirx.Evaluate, on_evaluate)])
    if not count[0]:
        return func, 0
    return func.with_body(body), count[0]


def _distinct(accesses: list) -> list:
    """The accesses less repeats of one element under one guard (an accumulator reads the
    element it writes: one check covers both)."""
    import tvm_ffi

    out: list = []
    for access in accesses:
        _, buffer, indices, scope = access
        if not any(buffer.same_as(b) and tvm_ffi.structural_equal(indices, i) and tvm_ffi.structural_equal(scope, s)
                   for _, b, i, s in out):
            out.append(access)
    return out


def _loads(expr, scope: tuple) -> list:
    """Every load in ``expr`` as ("reads", buffer, indices, scope), where ``scope`` is
    the chain of guards (("if", cond) / ("let", var, value)) under which it runs."""
    import tvm
    import tvm_ffi
    from tvm import tirx

    found: list = []

    def on_call(call):
        if getattr(call.op, "name", "") != "prim.if_then_else" or len(call.args) != 3:
            return None
        cond, then, other = call.args
        found.extend(_loads(cond, scope))
        found.extend(_loads(then, scope + (("if", cond),)))
        found.extend(_loads(other, scope + (("if", tirx.Not(cond)),)))
        return tvm_ffi.WalkResult.SKIP

    def on_select(sel):
        found.extend(_loads(sel.condition, scope))
        found.extend(_loads(sel.true_value, scope + (("if", sel.condition),)))
        found.extend(_loads(sel.false_value, scope + (("if", tirx.Not(sel.condition)),)))
        return tvm_ffi.WalkResult.SKIP

    def on_let(let):
        found.extend(_loads(let.value, scope))
        found.extend(_loads(let.body, scope + (("let", let.var, let.value),)))
        return tvm_ffi.WalkResult.SKIP

    def on_load(load):
        found.append(("reads", load.source, list(load.indices), scope))
        return None  # loads in its indices (a gather) are found below, under the same scope

    tvm_ffi.structural_walk(expr, [(tvm.ir.expr.Call, on_call), (tirx.Select, on_select), (tirx.Let, on_let),
                                   (tvm.ir.expr.TensorLoad, on_load)], order="pre")
    return found


def _assert(func_name: str, kind: str, buffer, indices: list, scope: tuple):
    """The assert of one access (None when every index is a constant inside the shape)."""
    from tvm import tirx
    from tvm.ir.expr import StringImm

    shape = list(buffer.shape)
    if len(shape) != len(indices):  # a flat view of an N-d buffer: the check would be wrong, leave it
        return None
    conds = []
    for index, extent in zip(indices, shape):
        if _const(index) is not None and _const(extent) is not None and 0 <= _const(index) < _const(extent):
            continue
        dtype = _dtype(index)
        if dtype is None or "x" in dtype:  # a vector index (Ramp) or no type known: leave it
            return None
        bound = extent if _dtype(extent) == dtype else tirx.Cast(dtype, extent)
        conds.append(tirx.And(tirx.GE(index, tirx.const(0, dtype)), tirx.LT(index, bound)))
    if not conds:
        return None
    cond = conds[0]
    for c in conds[1:]:
        cond = tirx.And(cond, c)
    for entry in reversed(scope):
        if entry[0] == "if":
            cond = tirx.Or(tirx.Not(entry[1]), cond)
        else:
            cond = tirx.Let(entry[1], entry[2], cond)
    message = (f"{MARK}: {func_name} {kind} {buffer.name}[{_index_text(indices)}] outside its shape "
               f"({', '.join(str(_const(e) if _const(e) is not None else e) for e in shape)})")
    # AssertStmt's Python signature says (kind, condition, parts); the constructor takes
    # (condition, kind, parts) (TVM-NOTES): positional, in the constructor's order.
    return tirx.AssertStmt(cond, StringImm(ERROR_KIND), [StringImm(message)])


def _dtype(expr) -> str | None:
    """A PrimExpr's dtype ("int64"); TVM 0.27 keeps it in ``expr.ty`` (a PrimType), not ``expr.dtype``."""
    ty = getattr(expr, "ty", None)
    dtype = getattr(ty, "dtype", None)
    return str(dtype) if dtype is not None else None


def _const(expr):
    from tvm import tirx

    return int(expr.value) if isinstance(expr, tirx.IntImm) else None


def _index_text(indices: list) -> str:
    import re

    parts = []
    for index in indices:
        text = re.sub(r"T\.int(?:64|32)\((-?\d+)\)", r"\1", str(index))
        parts.append(text if len(text) <= _MAX_INDEX_TEXT else text[:_MAX_INDEX_TEXT] + "…")
    return ", ".join(parts)
