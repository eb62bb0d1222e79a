"""Tensor-level (TIR) mutation operators.

They work on the legalized module (``base.lower``): a mutant is that module with one
PrimFunc replaced. A site is one node of one PrimFunc, located by
``(PrimFunc name, ordinal of the anchor node in a post-order walk, ordinal inside it)``;
PrimFuncs are visited in name order, so site order is stable across processes.

Beyond the base contract each operator offers ``mutate_lowered(lowered, site, memo)``,
which hashes and compares only the replaced PrimFunc (see ``TirMutation``).
"""
from __future__ import annotations

import difflib
import math
from typing import Callable

import ml_dtypes
import numpy as np
import tvm
import tvm_ffi
from tvm import tirx
from tvm.s_tir.stmt import SBlock

from .base import (
    EQUIVALENT,
    NON_VIABLE,
    PENDING,
    Example,
    MutationOperator,
    Outcome,
    Site,
    hash_text,
    lower,
    structural_hash_hex,
)

_IF_THEN_ELSE = "prim.if_then_else"
_CMP_SYMBOL = {tirx.LT: "<", tirx.LE: "<=", tirx.GT: ">", tirx.GE: ">=", tirx.EQ: "==", tirx.NE: "!="}
_CMP_NAME = {tirx.LT: "lt", tirx.LE: "le", tirx.GT: "gt", tirx.GE: "ge", tirx.EQ: "eq", tirx.NE: "ne"}
_CMP_TYPES = tuple(_CMP_SYMBOL)
_SYMBOL_OF_NAME = {_CMP_NAME[t]: _CMP_SYMBOL[t] for t in _CMP_TYPES}


# ---------------------------------------------------------------- small helpers

def _dtype(expr) -> str:
    return str(expr.ty.dtype)


def _short(expr) -> str:
    """A compact rendering of simple expressions (no TVMScript printer: it is slow)."""
    if isinstance(expr, tvm.ir.expr.Var):
        return expr.name
    if isinstance(expr, (tirx.IntImm, tirx.FloatImm)):
        return str(expr.value)
    if isinstance(expr, _CMP_TYPES):
        return f"{_short(expr.a)} {_CMP_SYMBOL[type(expr)]} {_short(expr.b)}"
    if isinstance(expr, tvm.ir.expr.TensorLoad):
        return f"{_short(expr.source)}[{', '.join(_short(i) for i in expr.indices)}]"
    if isinstance(expr, (tirx.Add, tirx.Sub, tirx.Mul)):
        sym = {tirx.Add: "+", tirx.Sub: "-", tirx.Mul: "*"}[type(expr)]
        return f"({_short(expr.a)} {sym} {_short(expr.b)})"
    return type(expr).__name__


def _buffer_text(buf) -> str:
    shape = "x".join(str(int(d)) if isinstance(d, tirx.IntImm) else str(d) for d in buf.ty.shape)
    return f"{buf.name}[{shape}] {buf.ty.dtype}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _one(dtype: str, value: float):
    return tirx.const(int(value) if not dtype.startswith(("float", "bfloat")) else float(value), dtype)


def _finite_number(operator: str, name: str, value, nonzero: bool = False) -> float:
    """An operator parameter that must be a finite number (and not 0 where 0 changes nothing)."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"operator {operator!r}: {name} must be a finite number, not {value!r}")
    if nonzero and value == 0:
        raise ValueError(f"operator {operator!r}: {name} = 0 changes nothing")
    return value


def _is_numeric(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat", "int", "uint"))


def _numpy_dtype(dtype: str):
    return ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)


def prim_funcs(lowered: tvm.IRModule) -> list[tuple[tvm.ir.GlobalVar, tirx.PrimFunc]]:
    """The PrimFuncs of a module, in name order (the map's own order is not guaranteed)."""
    found = [(gv, f) for gv, f in lowered.functions.items() if isinstance(f, tirx.PrimFunc)]
    return sorted(found, key=lambda item: item[0].name_hint)


def _condition_of(node):
    if isinstance(node, tvm.ir.expr.Call):
        return node.args[0]
    return node.condition


def _is_condition_anchor(node) -> bool:
    if isinstance(node, tvm.ir.expr.Call):
        return isinstance(node.op, tvm.ir.Op) and node.op.name == _IF_THEN_ELSE
    return True


def _with_condition(node, cond):
    if isinstance(node, tvm.ir.expr.Call):
        return tvm.ir.expr.Call(node.op, [cond, *list(node.args)[1:]], node.attrs, node.ty_args,
                                node.span, node.ty)
    if isinstance(node, tirx.Select):
        return tirx.Select(cond, node.true_value, node.false_value, node.span)
    return tirx.IfThenElse(cond, node.then_case, node.else_case, node.span)


def _anchor_kind(node) -> str:
    if isinstance(node, tvm.ir.expr.Call):
        return "if_then_else"
    return "Select" if isinstance(node, tirx.Select) else "IfThenElse"


def _nth_mapped(root, types, eligible: Callable, index: int, rewrite: Callable):
    """``root`` with the ``index``-th eligible node of ``types`` (post-order) rewritten."""
    seen = [0]
    hit = [False]

    def visit(node):
        if not eligible(node):
            return node
        position = seen[0]
        seen[0] += 1
        if position != index:
            return node
        hit[0] = True
        return rewrite(node)

    out = tvm_ffi.structural_map(root, (types, visit))
    if not hit[0]:
        raise LookupError(f"site {index} not found ({seen[0]} candidates)")
    return out


def _collect(root, types, eligible: Callable = lambda n: True) -> list:
    found: list = []
    tvm_ffi.structural_walk(root, (types, lambda n: found.append(n) if eligible(n) else None))
    return found


# ---------------------------------------------------------------- context of each anchor

class _FuncIndex:
    """Post-order walk of one PrimFunc remembering the leaf block around each node."""

    def __init__(self, func: tirx.PrimFunc, anchor_types, eligible: Callable):
        events: list = []
        tvm_ffi.structural_walk(func, ((*anchor_types, SBlock), events.append))
        self.anchors: list = []
        self.blocks_after: list = []  # enclosing leaf block of each anchor (next SBlock)
        self.blocks_before: list = []  # last block inside each anchor (previous SBlock)
        last_block = None
        pending: list[int] = []
        for node in events:
            if isinstance(node, SBlock):
                for i in pending:
                    self.blocks_after[i] = node
                pending = []
                last_block = node
            elif eligible(node):
                self.anchors.append(node)
                self.blocks_after.append(None)
                self.blocks_before.append(last_block)
                pending.append(len(self.anchors) - 1)


# ---------------------------------------------------------------- the operator family

class TirOperator(MutationOperator):
    """Base of the TIR operators: sites are (PrimFunc, anchor, inner position)."""

    level = "tir"
    works_on = "lowered"
    anchor_types: tuple = ()

    def anchor_eligible(self, node) -> bool:
        return True

    def inner_sites(self, anchor) -> list[str]:
        """Descriptions of the mutable positions inside one anchor (one entry: the anchor)."""
        return [""]

    def rewrite(self, anchor, inner: int):
        raise NotImplementedError

    def describe(self, func_name: str, index: _FuncIndex, position: int, inner_text: str) -> str:
        raise NotImplementedError

    def examples(self) -> list[Example]:
        return list(EXAMPLES.get(self.name, ()))

    # -- contract
    def sites(self, mod: tvm.IRModule) -> list[Site]:
        lowered = lower(mod)
        out: list[Site] = []
        for gv, func in prim_funcs(lowered):
            index = _FuncIndex(func, self.anchor_types, self.anchor_eligible)
            for position, anchor in enumerate(index.anchors):
                for inner, text in enumerate(self.inner_sites(anchor)):
                    out.append(Site(len(out), self.describe(gv.name_hint, index, position, text),
                                    (gv.name_hint, position, inner)))
        return out

    def mutate_func(self, func: tirx.PrimFunc, site: Site) -> tirx.PrimFunc:
        _, position, inner = site.key
        return _nth_mapped(func, self.anchor_types, self.anchor_eligible, position,
                           lambda node: self.rewrite(node, inner))

    def apply(self, mod: tvm.IRModule, site: Site) -> tvm.IRModule:
        lowered = lower(mod)
        gv = lowered.get_global_var(site.key[0])
        new_func = self.mutate_func(lowered[gv], site)
        _verify(new_func)
        return _replace(lowered, gv, new_func)

    def mutate(self, lowered: tvm.IRModule, site: Site, memo: dict) -> Outcome:
        """The mutant of an already lowered module, judged on the replaced PrimFunc only.

        The hash combines the original module's hash with the name and structural hash
        of the replaced PrimFunc, so no whole-module hash is needed. ``memo`` (a dict
        that lives for one enumeration) keeps the module hash and the simplified
        original PrimFuncs between calls. Never raises.
        """
        base_hash = memo.get("module_hash")
        if base_hash is None:
            base_hash = memo["module_hash"] = structural_hash_hex(lowered)
        name = site.key[0]
        try:
            gv = lowered.get_global_var(name)
            original = lowered[gv]
            new_func = self.mutate_func(original, site)
            _verify(new_func)
        except Exception as err:  # a rewrite that fails or does not verify is non-viable
            return Outcome(None, "", NON_VIABLE, _reason(err))
        digest = hash_text(f"{base_hash}:{name}:{tvm_ffi.structural_hash(new_func) & 0xFFFFFFFFFFFFFFFF:x}")
        mutant = _replace(lowered, gv, new_func)
        reason = self.equivalence(original, new_func, site, memo)
        if reason:
            return Outcome(mutant, f"{digest:016x}", EQUIVALENT, reason)
        return Outcome(mutant, f"{digest:016x}", PENDING)

    def equivalence(self, original, new_func, site: Site, memo: dict) -> str:
        """Why the mutant cannot differ from the original ("" when that is not shown)."""
        key = ("simplified", site.key[0])
        try:
            if key not in memo:
                memo[key] = _simplify(original)
            same = tvm_ffi.structural_equal(_simplify(new_func), memo[key])
        except Exception:  # the simplifier may reject odd IR: nothing is claimed then
            same = False
        return f"PrimFunc {site.key[0]} simplifies to the original" if same else ""

    def diff(self, original: tvm.IRModule, mutated: tvm.IRModule, site: Site) -> str:
        """Diff of the replaced PrimFunc only (the rest of the module is unchanged)."""
        name = site.key[0]
        a = lower(original)[name].script().splitlines()
        b = mutated[name].script().splitlines()
        return "\n".join(difflib.unified_diff(a, b, f"original {name}", f"mutant {name}", n=3, lineterm=""))


def _verify(func: tirx.PrimFunc) -> None:
    tvm.s_tir.analysis.verify_well_formed(func, True)


def _simplify(func: tirx.PrimFunc) -> tirx.PrimFunc:
    return tirx.transform.StmtSimplify()(tvm.IRModule({"f": func}))["f"]


def _replace(lowered: tvm.IRModule, gv, new_func) -> tvm.IRModule:
    out = tvm.IRModule(lowered.functions, lowered.attrs, lowered.global_infos)
    out[gv] = new_func
    return out


def _reason(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:300]


# ---------------------------------------------------------------- conditions

class _ConditionOperator(TirOperator):
    """Comparisons inside the condition of if_then_else, Select and IfThenElse."""

    anchor_types = (tvm.ir.expr.Call, tirx.Select, tirx.IfThenElse)
    source: tuple = _CMP_TYPES

    def anchor_eligible(self, node) -> bool:
        return _is_condition_anchor(node)

    def comparison_eligible(self, cmp) -> bool:
        return isinstance(cmp, self.source)

    def _comparisons(self, anchor) -> list:
        return _collect(_condition_of(anchor), _CMP_TYPES, self.comparison_eligible)

    def inner_sites(self, anchor) -> list[str]:
        return [_short(c) for c in self._comparisons(anchor)]

    def rewrite_comparison(self, cmp):
        raise NotImplementedError

    def rewrite(self, anchor, inner: int):
        cond = _nth_mapped(_condition_of(anchor), _CMP_TYPES, self.comparison_eligible, inner,
                           self.rewrite_comparison)
        return _with_condition(anchor, cond)

    def describe(self, func_name, index, position, inner_text):
        anchor = index.anchors[position]
        block = index.blocks_after[position]
        where = f"block {block.name_hint}" if block is not None else "function body"
        return (f"{func_name} / {where}: `{inner_text}` in the condition of the "
                f"{_ordinal(position + 1)} conditional ({_anchor_kind(anchor)})")


class CompareSwap(_ConditionOperator):
    """Replace one comparison kind with another (``a < b`` -> ``a <= b``)."""

    def __init__(self, source, target):
        self.source = source
        self.target = target
        self.name = f"tir_{_CMP_NAME[source]}_to_{_CMP_NAME[target]}"
        self.doc = (f"In a TIR condition, replace `{_CMP_SYMBOL[source]}` with `{_CMP_SYMBOL[target]}`.")

    def rewrite_comparison(self, cmp):
        return self.target(cmp.a, cmp.b, cmp.span)


class ThresholdShift(_ConditionOperator):
    """Move the right-hand side of one comparison by a constant (``a < b`` -> ``a < b + 1``).
    ``tir_cond_rhs_shift`` takes the shift as parameter ``delta`` (a fractional shift
    applies to float comparisons only) and ``cmp``: the comparison it shifts (``lt``,
    ``le``, ``gt``, ``ge``, ``eq``, ``ne``; ``any``, the default: every kind)."""

    def __init__(self, delta: float, name: str = "", cmp: str = "any"):
        self.delta, self.cmp = delta, cmp
        sign = "plus" if delta > 0 else "minus"
        self.name = name or f"tir_cond_rhs_{sign}{abs(delta)}"
        self.params = {"delta": delta, "cmp": cmp} if name else {}
        self.by_default = not name
        which = "a comparison" if cmp == "any" else f"a `{_SYMBOL_OF_NAME[cmp]}` comparison"
        self.doc = f"In a TIR condition, shift the right-hand side of {which} by {delta:+g}."

    def check_param(self, name, value):
        if name == "cmp":
            known = ("any", *_CMP_NAME.values())
            if value not in known:
                raise ValueError(f"operator {self.name!r}: cmp must be one of {', '.join(known)}, not {value!r}")
            return value
        return _finite_number(self.name, name, value, nonzero=True)

    def with_params(self, params):
        return ThresholdShift(params["delta"], self.name, params["cmp"])

    def comparison_eligible(self, cmp) -> bool:
        if self.cmp != "any" and _CMP_NAME.get(type(cmp)) != self.cmp:
            return False
        dtype = _dtype(cmp.b)
        whole = float(self.delta).is_integer()
        return _is_numeric(dtype) and (whole or dtype.startswith(("float", "bfloat")))

    def rewrite_comparison(self, cmp):
        dtype = _dtype(cmp.b)
        rhs = tirx.Add(cmp.b, _one(dtype, self.delta)) if self.delta > 0 else tirx.Sub(cmp.b, _one(dtype, -self.delta))
        return type(cmp)(cmp.a, rhs, cmp.span)


# ---------------------------------------------------------------- stores

class _StoreOperator(TirOperator):
    anchor_types = (tirx.BufferStore,)

    def anchor_eligible(self, node) -> bool:
        return _is_numeric(str(node.buffer.ty.dtype))

    def store_eligible(self, store) -> bool:
        return True

    def inner_sites(self, anchor) -> list[str]:
        return [""] if self.store_eligible(anchor) else []

    def new_value(self, store):
        raise NotImplementedError

    def rewrite(self, anchor, inner: int):
        return tirx.BufferStore(anchor.buffer, self.new_value(anchor), anchor.indices, anchor.span)

    def describe(self, func_name, index, position, inner_text):
        store = index.anchors[position]
        block = index.blocks_after[position]
        role = "store"
        if block is not None and block.init is not None and block.init.same_as(store):
            role = "init store"
        where = f"block {block.name_hint}" if block is not None else "function body"
        return f"{func_name} / {where}: {role} to {_buffer_text(store.buffer)} ({_ordinal(position + 1)} store)"


def _round_to_bfloat16(value):
    """float32 rounded to the nearest bfloat16 (ties to even), still as float32.

    Written with integer bit operations because the CPU build drops a
    float32 -> bfloat16 -> float32 cast pair (the mutant would equal the original).
    """
    u32 = lambda v: tirx.const(v, "uint32")  # noqa: E731
    bits = tirx.reinterpret("uint32", value)
    odd = tirx.BitwiseAnd(tirx.RShift(bits, u32(16)), u32(1))
    rounded = tirx.BitwiseAnd(tirx.Add(tirx.Add(bits, u32(0x7FFF)), odd), u32(0xFFFF0000))
    return tirx.reinterpret("float32", rounded)


def _cast(x, dtype: str):
    """A Python number cast to ``dtype`` as the built code casts it: IEEE rounding to a float
    type (too large: +-inf), truncation to an int type, saturating (numpy would wrap)."""
    target = np.dtype(_numpy_dtype(dtype))
    if np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        return min(max(x, info.min), info.max) if math.isinf(x) else min(max(int(x), info.min), info.max)
    with np.errstate(over="ignore"):
        return float(np.array(x).astype(target))


def _round_trip(value, dtype: str, narrow: str):
    """``(value as dtype, value cast to narrow and back to dtype)``; None for NaN."""
    if math.isnan(value):
        return None
    exact = _cast(value, dtype)
    return exact, _cast(_cast(exact, narrow), dtype)


def _fold_overflow(value, dtype: str, narrow: str):
    """A stored constant beyond ``narrow``'s range, folded into its round trip (a ``dtype``
    constant); None for any other value. TVM refuses to build a cast of such a literal
    ("Literal value -3.40282e+38 exceeds minimum of float16": max-pool's init -FLT_MAX)."""
    if not isinstance(value, (tirx.IntImm, tirx.FloatImm)) or not math.isfinite(value.value):
        return None
    kind = np.dtype(_numpy_dtype(narrow))
    info = np.iinfo(kind) if np.issubdtype(kind, np.integer) else ml_dtypes.finfo(kind)
    if float(info.min) <= value.value <= float(info.max):
        return None
    return tirx.const(_round_trip(value.value, dtype, narrow)[1], dtype)


CAST_DTYPES = ("float16", "bfloat16", "int8", "int16", "int32", "uint8")


class StoreCast(_StoreOperator):
    """Round the stored value through a narrower type and back (``tir_store_cast`` takes
    the type as parameter ``dtype``)."""

    def __init__(self, dtype: str, name: str = ""):
        self.dtype = dtype
        self.name = name or f"tir_store_cast_{dtype}"
        self.params = {"dtype": dtype} if name else {}
        self.by_default = not name
        self.doc = f"At a TIR buffer store, cast the value to {dtype} and back to the buffer's type."

    def check_param(self, name, value):
        if value not in CAST_DTYPES:
            raise ValueError(f"operator {self.name!r}: dtype must be one of {', '.join(CAST_DTYPES)}, not {value!r}")
        return value

    def with_params(self, params):
        return StoreCast(params["dtype"], self.name)

    def store_eligible(self, store) -> bool:
        return str(store.buffer.ty.dtype) != self.dtype

    def new_value(self, store):
        dtype = str(store.buffer.ty.dtype)
        if self.dtype == "bfloat16":  # casts no literal to bfloat16: TVM builds any constant
            return tirx.Cast(dtype, _round_to_bfloat16(tirx.Cast("float32", store.value)))
        folded = _fold_overflow(store.value, dtype, self.dtype)
        return folded if folded is not None else tirx.Cast(dtype, tirx.Cast(self.dtype, store.value))

    def equivalence(self, original, new_func, site, memo) -> str:
        # TVM's simplifier folds a constant cast to bfloat16 without rounding it (it
        # claimed -FLT_MAX survives the round trip; it becomes -inf), so only a numeric
        # round trip of a constant stored value is trusted here.
        _, position, _ = site.key
        store = _collect(original, self.anchor_types, self.anchor_eligible)[position]
        value = store.value
        if not isinstance(value, (tirx.IntImm, tirx.FloatImm)):
            return ""
        pair = _round_trip(value.value, str(store.buffer.ty.dtype), self.dtype)
        if pair is not None and pair[0] == pair[1]:
            return f"the stored constant {value.value!r} survives the round trip through {self.dtype}"
        return ""


class StoreArith(_StoreOperator):
    """Add a constant to, subtract it from, or multiply it with the stored value."""

    _OPS = {"add": (tirx.Add, "add {c} to"), "sub": (tirx.Sub, "subtract {c} from"),
            "scale": (tirx.Mul, "multiply by {c}")}

    _PARAM = {"add": "delta", "sub": "delta", "scale": "factor"}

    def __init__(self, kind: str, constant: float, name: str = ""):
        """``name`` given: the parameterised form (``tir_store_add``, ``tir_store_scale``)."""
        self.kind = kind
        self.constant = constant
        text = f"{constant:g}"
        self.name = name or f"tir_store_{kind}{text.replace('.', '_')}"
        self.params = {self._PARAM[kind]: constant} if name else {}
        self.by_default = not name
        self.doc = f"At a TIR buffer store, {self._OPS[kind][1].format(c=text)} the stored value."

    def check_param(self, name, value):
        return _finite_number(self.name, name, value, nonzero=self.kind != "scale")

    def with_params(self, params):
        return StoreArith(self.kind, params[self._PARAM[self.kind]], self.name)

    def store_eligible(self, store) -> bool:
        """A fractional constant changes float stores only (it would truncate to 0 on ints)."""
        whole = float(self.constant).is_integer()
        return whole or str(store.buffer.ty.dtype).startswith(("float", "bfloat"))

    def new_value(self, store):
        dtype = str(store.buffer.ty.dtype)
        return self._OPS[self.kind][0](store.value, _one(dtype, self.constant))


# ---------------------------------------------------------------- loops

class _LoopOperator(TirOperator):
    anchor_types = (tirx.For,)

    def inner_sites(self, anchor) -> list[str]:
        extent = anchor.extent
        if isinstance(extent, tirx.IntImm) and extent.value < self.min_extent:
            return []
        return [""]

    min_extent = 1

    def describe(self, func_name, index, position, inner_text):
        loop = index.anchors[position]
        block = index.blocks_before[position]
        inside = f" around block {block.name_hint}" if block is not None else ""
        return (f"{func_name}: loop {loop.loop_var.name} in [{_short(loop.min)}, "
                f"{_short(loop.min)} + {_short(loop.extent)}){inside} ({_ordinal(position + 1)} loop, post-order)")

    def _for(self, loop, new_min, new_extent):
        return tirx.For(loop.loop_var, new_min, new_extent, loop.kind, loop.body, loop.thread_binding,
                        loop.annotations, loop.step, loop.span)


def _minus_one(expr):
    if isinstance(expr, tirx.IntImm):
        return tirx.IntImm(_dtype(expr), expr.value - 1)
    return tirx.Sub(expr, _one(_dtype(expr), 1))


def _plus_one(expr):
    if isinstance(expr, tirx.IntImm):
        return tirx.IntImm(_dtype(expr), expr.value + 1)
    return tirx.Add(expr, _one(_dtype(expr), 1))


class LoopExtentMinus1(_LoopOperator):
    name = "tir_loop_extent_minus1"
    doc = "Shrink a TIR loop's extent by one (its last iteration is skipped)."

    def rewrite(self, anchor, inner: int):
        return self._for(anchor, anchor.min, _minus_one(anchor.extent))


class LoopMinPlus1(_LoopOperator):
    name = "tir_loop_min_plus1"
    doc = "Start a TIR loop one iteration later, same end (its first iteration is skipped)."
    # with extent 1 this equals tir_loop_extent_minus1: leave those loops to that operator
    min_extent = 2

    def rewrite(self, anchor, inner: int):
        return self._for(anchor, _plus_one(anchor.min), _minus_one(anchor.extent))


OPERATORS = (
    CompareSwap(tirx.LT, tirx.LE),
    CompareSwap(tirx.LE, tirx.LT),
    CompareSwap(tirx.GT, tirx.GE),
    CompareSwap(tirx.GE, tirx.GT),
    CompareSwap(tirx.LT, tirx.GT),
    CompareSwap(tirx.GT, tirx.LT),
    CompareSwap(tirx.EQ, tirx.NE),
    CompareSwap(tirx.NE, tirx.EQ),
    ThresholdShift(+1),
    ThresholdShift(-1),
    StoreCast("float16"),
    StoreCast("bfloat16"),
    StoreCast("int8"),
    StoreCast("int16"),
    StoreCast("int32"),
    StoreArith("add", 1),
    StoreArith("sub", 1),
    StoreArith("scale", 2),
    LoopExtentMinus1(),
    LoopMinPlus1(),
    # Parameterised forms (config: `tir_store_add = { delta = -1e-8 }`); defaults as above.
    ThresholdShift(1, name="tir_cond_rhs_shift"),
    StoreCast("float16", name="tir_store_cast"),
    StoreArith("add", 1, name="tir_store_add"),
    StoreArith("scale", 2, name="tir_store_scale"),
)


# Worked examples (`base.Example`) on `mutators.examples.PROGRAMS`, by operator name:
# program, site, text of a removed line, text of an added line of the PrimFunc's diff.
# The CNN's conditions are conv2d padding checks (``1 <= v_i2 and v_i2 < 9``); those of
# ``compare`` are ``x > 0.5``, ``x >= 0.25``, ``vi == 3`` and ``vi != 5``.
_FLT_MIN = "T.float32(-340282346638528859811704183484516925440.0)"  # max_pool2d's init value
EXAMPLES: dict[str, tuple[Example, ...]] = {
    "tir_lt_to_le": (Example("cnn", 0, "v_i2 < T.int64(9)", "v_i2 <= T.int64(9)"),),
    "tir_le_to_lt": (Example("cnn", 0, "T.int64(1) <= v_i2", "T.int64(1) < v_i2"),),
    "tir_gt_to_ge": (Example("compare", 0, "x[vi] > T.float32(0.5)", "x[vi] >= T.float32(0.5)"),),
    "tir_ge_to_gt": (Example("compare", 0, "x[vi] >= T.float32(0.25)", "x[vi] > T.float32(0.25)"),),
    "tir_lt_to_gt": (Example("cnn", 3, "v_i3 < T.int64(5)", "v_i3 > T.int64(5)"),),
    "tir_gt_to_lt": (Example("compare", 0, "x[vi] > T.float32(0.5)", "x[vi] < T.float32(0.5)"),),
    "tir_eq_to_ne": (Example("compare", 0, "vi == 3", "vi != 3"),),
    "tir_ne_to_eq": (Example("compare", 0, "vi != 5", "vi == 5"),),
    "tir_cond_rhs_plus1": (Example("cnn", 1, "v_i2 < T.int64(9)", "v_i2 < T.Add(T.int64(9), T.int64(1))"),
                           Example("compare", 0, "x[vi] > T.float32(0.5)",
                                   "x[vi] > T.Add(T.float32(0.5), T.float32(1.0))")),
    "tir_cond_rhs_minus1": (Example("cnn", 0, "T.int64(1) <= v_i2", "T.int64(1) <= v_i2 - T.int64(1)"),
                            Example("compare", 3, "vi != 5", "vi != T.Sub(5, 1)")),
    "tir_store_cast_float16": (
        Example("cnn", 12, "matmul[v_i0, v_i1] = matmul[v_i0, v_i1] + lv7",
                'matmul[v_i0, v_i1] = T.Cast("float32", T.Cast("float16", matmul[v_i0, v_i1] + lv7'),
        # the init store of a reduction: 0.0 survives the round trip
        Example("cnn", 6, "conv2d_nchw[v_nn, v_ff, v_yy, v_xx] = T.float32(0.0)",
                'T.Cast("float32", T.Cast("float16", T.float32(0.0)))', status="equivalent"),
    ),
    # rounded to the nearest bfloat16 with integer operations on the float32 bits
    "tir_store_cast_bfloat16": (Example("cnn", 12, "matmul[v_i0, v_i1] = matmul[v_i0, v_i1] + lv7",
                                        'T.reinterpret("uint32", T.Cast("float32", matmul[v_i0, v_i1] + lv7'),),
    "tir_store_cast_int8": (Example("cnn", 0, "T_add[v_ax0, v_ax1, v_ax2, v_ax3] = lv[",
                                    'T_add[v_ax0, v_ax1, v_ax2, v_ax3] = T.Cast("float32", T.Cast("int8", lv['),),
    "tir_store_cast_int16": (Example("cnn", 17, "T_reshape[v_ax0, v_ax1] = lv6[",
                                     'T_reshape[v_ax0, v_ax1] = T.Cast("float32", T.Cast("int16", lv6['),),
    "tir_store_cast_int32": (Example("cnn", 15, "= T.max(lv1[v_i0, v_i1, v_i2, v_i3], T.float32(0.0))",
                                     'T.Cast("float32", T.Cast("int32", T.max(lv1['),),
    "tir_store_add1": (
        Example("cnn", 1, "T_add[v_ax0, v_ax1] = lv8[v_ax0, v_ax1] + B[v_ax1]", "+ B[v_ax1] + T.float32(1.0)"),
        # max_pool2d's init value -FLT_MAX absorbs the +1 (float32 rounding)
        Example("cnn", 13, _FLT_MIN, f"T.Add({_FLT_MIN}, T.float32(1.0))", status="equivalent"),
    ),
    "tir_store_sub1": (Example("cnn", 14, "pool_max[v_ax0, v_ax1, v_ax2, v_ax3] = T.max(pool_max",
                               "* T.int64(2) + v_rv1]) - T.float32(1.0)"),),
    "tir_store_scale2": (
        Example("cnn", 12, "matmul[v_i0, v_i1] = matmul[v_i0, v_i1] + lv7",
                "matmul[v_i0, v_i1] = (matmul[v_i0, v_i1] + lv7[v_i0, v_k] * B[v_k, v_i1]) * T.float32(2.0)"),
        Example("cnn", 11, "matmul[v_i0, v_i1] = T.float32(0.0)", "T.Mul(T.float32(0.0), T.float32(2.0))",
                status="equivalent"),
    ),
    "tir_loop_extent_minus1": (Example("compare", 0, "for i in range(8):", "for i in range(7):"),
                               Example("cnn", 38, "T.grid(T.int64(1), T.int64(10), T.int64(16))",
                                       "T.grid(T.int64(1), T.int64(10), T.int64(15))")),
    "tir_loop_min_plus1": (Example("compare", 0, "for i in range(8):", "for i in range(1, 8):"),
                           Example("cnn", 28, "T.grid(T.int64(1), T.int64(10), T.int64(16))",
                                   "for k in range(T.int64(1), T.int64(16)):")),
}
# The parameterised forms at their defaults mutate exactly as the fixed operators above.
EXAMPLES.update({"tir_cond_rhs_shift": EXAMPLES["tir_cond_rhs_plus1"], "tir_store_cast": EXAMPLES["tir_store_cast_float16"],
                 "tir_store_add": EXAMPLES["tir_store_add1"], "tir_store_scale": EXAMPLES["tir_store_scale2"]})
