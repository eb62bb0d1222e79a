"""A sound default CPU schedule for the fused TensorIR PrimFuncs of a Relax module.

Untuned LLVM code runs every PrimFunc as naive serial loops. `default_schedule_pass`
gives each PrimFunc a simple rule-based schedule (see docs in TVM-NOTES, "Schedules and
tuning"): outer spatial loops fused and ``parallel``; reduction loops next, in their
original order; a register tile of 8-16 on a second spatial axis; the innermost spatial
lane ``vectorize``d with as many lanes as the target's SIMD registers hold. Padding blocks
stay separate (never inlined into a convolution), ``vectorize`` comes before
``decompose_reduction``.

Soundness first: the PrimFuncs may be mutants (a loop bound changed, a comparison swapped,
a stored value altered). A block is only rescheduled when its loop nest is the plain one
legalisation produces (one loop per block iterator, each covering the iterator's whole
domain from 0), its iterators are all declared spatial or reduction, and its stores write
exactly the spatial iterators, one-to-one (so parallel and vector lanes never write the
same element) and it reads its own output only at the element it writes. Every other
block keeps its loops as they are. The schedule only reorders, splits, fuses and annotates
loops; it never inlines or moves one block into another, so what each block computes, and
in which order the reduction visits its terms, is unchanged: scheduled and unscheduled
builds give bit-identical results on programs that stay in bounds.

Insert the pass after ``FuseTIR`` and before the VM lowering passes
(``RewriteDataflowReshape`` ...) of a Relax pipeline::

    passes += [relax.transform.FuseOps(), relax.transform.FuseTIR()]
    passes.append(schedules.default_schedule_pass(target))
    passes += [relax.transform.RewriteDataflowReshape(), ...]

Non-LLVM targets are left alone (the pass returns the module unchanged).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ScheduleStats",
    "default_schedule_pass",
    "schedule_module",
    "schedule_prim_func",
    "schedule_prim_func_report",
    "vector_bits",
    "resolve_target",
    "is_llvm_target",
]

# Blocks doing fewer scalar operations than this are not worth a parallel launch.
MIN_PARALLEL_WORK = 1 << 14
SCHEDULED_ATTR = "tirx.is_scheduled"


# ---------------------------------------------------------------- targets

def resolve_target(target: Any = None):
    """A ``tvm.target.Target`` from a dict, a string, a Target, an object with
    ``tvm_target()`` (MutateNN's `build.Target`), or None (the current target)."""
    import tvm

    if target is None:
        return tvm.target.Target.current(allow_none=True)
    if isinstance(target, tvm.target.Target):
        return target
    if hasattr(target, "tvm_target"):
        return target.tvm_target()
    if isinstance(target, dict):
        return tvm.target.Target(dict(target))
    return tvm.target.Target(target)


def is_llvm_target(target: Any) -> bool:
    target = resolve_target(target)
    return target is not None and target.kind.name == "llvm"


def _target_key(target) -> str:
    return str(target)


@functools.lru_cache(maxsize=32)
def _vector_bits_cached(key: str, target) -> int:
    from tvm.target.codegen import target_has_features

    def has(feature: str) -> bool:
        try:
            return bool(target_has_features(feature, target))
        except Exception:  # an unknown feature name for this architecture
            return False

    # llvm_get_vector_width answers 512 for every CPU in TVM 0.27 (even x86-64): not usable.
    if has("avx512f"):
        return 512
    if has("avx2") or has("avx"):
        return 256
    return 128  # SSE2 (every x86-64), NEON, and anything unknown


def vector_bits(target: Any) -> int:
    """Width in bits of the target's SIMD registers: 512 with AVX-512, 256 with AVX/AVX2,
    128 otherwise (plain x86-64, NEON), from the target's ``mcpu`` / ``mattr``."""
    target = resolve_target(target)
    return _vector_bits_cached(_target_key(target), target)


# ---------------------------------------------------------------- statistics

@dataclass
class ScheduleStats:
    """What a scheduling run did, per PrimFunc name."""

    scheduled: list[str] = field(default_factory=list)  # at least one block rescheduled
    untouched: list[str] = field(default_factory=list)  # nothing eligible or worth doing
    failed: dict[str, str] = field(default_factory=dict)  # error while scheduling: kept as is
    rules: dict[str, str] = field(default_factory=dict)  # name -> rule applied
    serial_blocks: dict[str, list[str]] = field(default_factory=dict)  # blocks kept serial, why
    skipped_target: bool = False  # the target is not LLVM: nothing was looked at

    @property
    def num_scheduled(self) -> int:
        return len(self.scheduled)

    @property
    def num_left_alone(self) -> int:
        return len(self.untouched) + len(self.failed)

    def merge(self, other: "ScheduleStats") -> None:
        self.scheduled += other.scheduled
        self.untouched += other.untouched
        self.failed.update(other.failed)
        self.rules.update(other.rules)
        self.serial_blocks.update(other.serial_blocks)
        self.skipped_target = self.skipped_target or other.skipped_target

    def summary(self) -> str:
        serial = sum(len(v) for v in self.serial_blocks.values())
        return (f"{self.num_scheduled} PrimFuncs scheduled, {len(self.untouched)} left alone, "
                f"{len(self.failed)} failed (kept unscheduled); {serial} blocks kept serial")


@dataclass
class FuncReport:
    """The outcome for one PrimFunc."""

    status: str  # "scheduled", "untouched" or "failed"
    rule: str = ""
    reason: str = ""
    serial_blocks: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- block analysis

def _int(expr) -> int | None:
    from tvm import tirx

    return int(expr.value) if isinstance(expr, tirx.IntImm) else None


def _is_true(expr) -> bool:
    value = _int(expr)
    return value is not None and value != 0


@dataclass
class _Axis:
    var: Any  # the block iterator's Var
    loop: Any  # LoopRV
    extent: int
    spatial: bool


@dataclass
class _BlockPlan:
    name: str
    axes: list[_Axis]  # in loop order (outermost first), unit axes included
    store_indices: list  # the store's indices (PrimExprs)
    buffer_shape: list[int | None]
    dtype_bits: int
    reads: list  # TensorLoad nodes in the stored value
    has_if_then_else: bool
    work: int

    @property
    def spatial(self) -> list[_Axis]:
        return [a for a in self.axes if a.spatial and a.extent > 1]

    @property
    def reduction(self) -> list[_Axis]:
        return [a for a in self.axes if not a.spatial and a.extent > 1]


class _NotEligible(Exception):
    """This block keeps its loops (the message says why)."""


def _get_realize(sch, block_rv):
    import tvm_ffi

    return tvm_ffi.get_global_func("s_tir.schedule.GetSBlockRealize")(sch, block_rv)


def _collect(root, types) -> list:
    import tvm_ffi

    found: list = []
    tvm_ffi.structural_walk(root, (types, found.append))
    return found


def _leaf_stores(body) -> tuple[list, list]:
    """(asserts, stores) of a block body made of AssertStmts then one BufferStore."""
    from tvm import tirx

    stmts = list(body.seq) if isinstance(body, tirx.SeqStmt) else [body]
    asserts = [s for s in stmts[:-1] if isinstance(s, tirx.AssertStmt)]
    if len(asserts) != len(stmts) - 1 or not isinstance(stmts[-1], tirx.BufferStore):
        raise _NotEligible("body is not a single buffer store")
    return asserts, [stmts[-1]]


def _analyse_block(sch, block_rv) -> _BlockPlan:
    """The plan of a block whose loops may be reordered, parallelised and vectorised;
    raises _NotEligible when anything is not the plain legalised form."""
    import tvm
    import tvm_ffi
    from tvm import tirx

    block = sch.get(block_rv)
    name = block.name_hint
    if len(block.alloc_buffers) or len(block.match_buffers):
        raise _NotEligible("allocates or matches buffers")
    realize = _get_realize(sch, block_rv)
    if not _is_true(realize.predicate):
        raise _NotEligible("has a predicate")
    loops = sch.get_loops(block_rv)
    fors = [sch.get(loop) for loop in loops]
    # A perfect nest owned by this block alone.
    for outer, inner in zip(fors, fors[1:]):
        if not outer.body.same_as(inner):
            raise _NotEligible("loop nest is not perfect")
    if fors and not fors[-1].body.same_as(realize):
        raise _NotEligible("loop nest is not perfect")
    for f in fors:
        if f.kind != tirx.ForKind.SERIAL or len(f.annotations) or f.thread_binding is not None:
            raise _NotEligible("loops already scheduled")
        if _int(f.min) != 0 or _int(f.extent) is None:
            raise _NotEligible("loop does not start at 0 with a constant extent")
        step = getattr(f, "step", None)
        if step is not None and _int(step) not in (None, 1):
            raise _NotEligible("loop has a step")
    if len(block.iter_vars) != len(fors):
        raise _NotEligible("iterators and loops differ in number")
    loop_index = {}
    for i, f in enumerate(fors):
        loop_index[f.loop_var] = i
    axes: list[_Axis | None] = [None] * len(fors)
    for iv, value in zip(block.iter_vars, realize.iter_values):
        if iv.iter_type not in (tirx.IterVar.DataPar, tirx.IterVar.CommReduce):
            raise _NotEligible("iterator neither spatial nor reduction")
        if not isinstance(value, tirx.Var) or value not in loop_index:
            raise _NotEligible("iterator not bound to one loop")
        i = loop_index[value]
        if axes[i] is not None:
            raise _NotEligible("loop bound to two iterators")
        extent = _int(fors[i].extent)
        if _int(iv.dom.min) != 0 or _int(iv.dom.extent) != extent:
            raise _NotEligible("loop range differs from the iterator's domain")
        axes[i] = _Axis(iv.var, loops[i], extent, iv.iter_type == tirx.IterVar.DataPar)
    if any(a is None for a in axes):
        raise _NotEligible("loop not bound to an iterator")
    # Nothing else in the body: asserts (bounds checks) and one store, the same in init.
    if len(block.writes) != 1:
        raise _NotEligible("writes more than one buffer")
    asserts, stores = _leaf_stores(block.body)
    if block.init is not None:
        _, init_stores = _leaf_stores(block.init)
        stores += init_stores
    buffer = block.writes[0].source
    indices = list(stores[0].indices)
    for store in stores:
        if not store.buffer.same_as(buffer):
            raise _NotEligible("stores to a buffer it does not declare")
        if len(store.indices) != len(indices) or not all(
                tvm_ffi.structural_equal(a, b) for a, b in zip(store.indices, indices)):
            raise _NotEligible("init and update store to different indices")
    # The write is one-to-one: every non-unit spatial iterator appears as one whole index.
    spatial_vars = {a.var: a for a in axes if a.spatial}
    seen = set()
    for index in indices:
        if isinstance(index, tirx.IntImm):
            continue
        if not isinstance(index, tirx.Var) or index not in spatial_vars:
            raise _NotEligible("store index is not a spatial iterator")
        if index in seen:
            raise _NotEligible("store index repeats an iterator")
        seen.add(index)
    missing = [a for a in axes if a.spatial and a.extent > 1 and a.var not in seen]
    if missing:
        raise _NotEligible("store does not depend on every spatial iterator")
    # Reads of the output buffer only at the element being written.
    loads = []
    for root in [s.value for s in stores] + [a.condition for a in asserts]:
        loads += _collect(root, tvm.ir.expr.TensorLoad)
    for load in loads:
        if load.source.same_as(buffer) and not (
                len(load.indices) == len(indices)
                and all(tvm_ffi.structural_equal(a, b) for a, b in zip(load.indices, indices))):
            raise _NotEligible("reads its own output at another element")
    if not all(a.spatial for a in axes) and not any(ld.source.same_as(buffer) for ld in loads):
        raise _NotEligible("reduction that does not accumulate")
    calls = _collect(stores[0].value, tvm.ir.Call)
    has_ite = any(getattr(c.op, "name", "") == "prim.if_then_else" for c in calls) or bool(
        _collect(stores[0].value, tirx.Select))
    shape = [_int(d) for d in buffer.shape]
    work = 1
    for a in axes:
        work *= a.extent
    return _BlockPlan(name, axes, indices, shape, _dtype_bits(buffer),
                      [ld for ld in loads if not ld.source.same_as(buffer)], has_ite, work)


def _dtype_bits(buffer) -> int:
    text = str(buffer.dtype)
    digits = "".join(ch for ch in text if ch.isdigit())
    return int(digits) if digits else 32


# ---------------------------------------------------------------- rules

def _largest_divisor(n: int, limit: int) -> int:
    for d in range(min(n, limit), 0, -1):
        if n % d == 0:
            return d
    return 1


def _vector_axis(plan: _BlockPlan) -> _Axis | None:
    """The spatial axis that indexes the output's innermost non-unit dimension."""
    by_var = {a.var: a for a in plan.axes}
    for index, dim in zip(reversed(plan.store_indices), reversed(plan.buffer_shape)):
        axis = by_var.get(index) if not isinstance(index, type(None)) else None
        if axis is not None and axis.extent > 1:
            return axis
        if dim != 1:
            return None  # a constant or unit index on a dimension wider than 1: strided
    return None


def _depends_on(expr, var) -> bool:
    from tvm import tirx

    hit = []
    import tvm_ffi

    tvm_ffi.structural_walk(expr, (tirx.Var, lambda v: hit.append(v) if v.same_as(var) else None))
    return bool(hit)


def _tile_axis(plan: _BlockPlan, vec: _Axis | None) -> _Axis | None:
    """A second spatial axis whose tile reuses the vector operand: one that no read
    indexed by the vector axis depends on (for NCHW convolution: output channels)."""
    if vec is None:
        return None
    vector_reads = [ld for ld in plan.reads if any(_depends_on(i, vec.var) for i in ld.indices)]
    best = None
    for axis in plan.spatial:
        if axis is vec:
            continue
        if any(_depends_on(i, axis.var) for ld in vector_reads for i in ld.indices):
            continue
        if best is None or axis.extent > best.extent:
            best = axis
    return best


def _contiguous_in(plan: _BlockPlan, vec: _Axis) -> bool:
    """Whether every read that depends on the vector axis reads consecutive elements along
    it (the axis appears only in the last index, with coefficient 1): TVM turns other
    vector loads into one scalar load per lane, slower than LLVM's own vectoriser."""
    import tvm

    for load in plan.reads:
        for pos, index in enumerate(load.indices):
            if not _depends_on(index, vec.var):
                continue
            if pos != len(load.indices) - 1:
                return False
            try:
                coeffs = tvm.sym.detect_linear_equation(index, [vec.var])
            except Exception:  # noqa: BLE001
                return False
            if len(coeffs) != 2 or _int(tvm.sym.Analyzer().simplify(coeffs[0])) != 1:
                return False
    return True


def _lanes_for(extent: int, lanes: int, pow2: bool = False) -> int:
    """Vector factor for an axis: all of it when it fits, else the largest divisor >= lanes/2."""
    if pow2:
        f = 1
        while f * 2 <= lanes and extent % (f * 2) == 0:
            f *= 2
        return f
    if extent <= lanes:
        return extent if extent >= 2 else 1
    d = _largest_divisor(extent, lanes)
    return d if d * 2 >= lanes else 1


class _Rules:
    def __init__(self, target):
        import os
        self.target = target
        self.bits = vector_bits(target)
        self.tile = 16 if self.bits >= 512 else 8
        self.mode = os.environ.get("SX_MODE", "")

    # -- one block
    def schedule_block(self, sch, block_rv, plan: _BlockPlan) -> bool:
        """Reschedule one eligible block in ``sch``; True when something changed.

        Blocks without a clean vector lane keep their loops: a ``parallel`` loop body
        is outlined into a closure where LLVM no longer sees the buffers as non-aliasing
        and stops auto-vectorising, which made such blocks several times slower."""
        if not plan.spatial:
            return False
        lanes = max(self.bits // max(plan.dtype_bits, 8), 1)
        vec = None if plan.has_if_then_else else _vector_axis(plan)  # padding: no guarded lanes
        if vec is None:
            return False
        contiguous = _contiguous_in(plan, vec)
        if plan.reduction:
            tile = _tile_axis(plan, vec)
            if not contiguous and tile is None:
                return False  # strided lanes with no register reuse: LLVM does better
            factor = _lanes_for(vec.extent, lanes)
            if factor < 2:
                return False
            return self._tiled(sch, block_rv, plan, vec, factor, tile)
        if not contiguous or "noinj" in self.mode:
            return False
        factor = _lanes_for(vec.extent, lanes, pow2=True)
        if factor < 2:
            return False
        return self._tiled(sch, block_rv, plan, vec, factor, None)

    def _outer_parallel(self, sch, plan: _BlockPlan) -> bool:
        """Fuse the spatial loops outside the first reduction loop (all but the innermost
        loop for an injective block) and run them in parallel; inner loops stay as they are."""
        if plan.work < MIN_PARALLEL_WORK or "nopar" in self.mode:
            return False
        lead = []
        for axis in plan.axes:
            if not axis.spatial:
                break
            lead.append(axis)
        if len(lead) == len(plan.axes):
            lead = lead[:-1]  # keep the innermost loop for LLVM's vectoriser
        if not any(a.extent > 1 for a in lead):
            return False
        loops = [a.loop for a in lead]  # a prefix of the nest: adjacent loops
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        sch.parallel(fused)
        return True

    def _tiled(self, sch, block_rv, plan: _BlockPlan, vec: _Axis, vec_factor: int, tile) -> bool:
        """Outer spatial loops fused and parallel, then the reduction loops in their order,
        then a register tile of a second spatial axis, then the vector lane."""
        is_reduction = bool(plan.reduction)
        tile_factor = _largest_divisor(tile.extent, self.tile) if tile is not None else 1
        if tile_factor < 2:
            tile = None
        outer_of, inner = {}, []
        if tile is not None:
            t_outer, t_inner = sch.split(tile.loop, factors=[None, tile_factor])
            outer_of[id(tile)] = t_outer
            inner.append(t_inner)
        if vec_factor == vec.extent:
            v_outer, v_inner = None, vec.loop
        else:
            v_outer, v_inner = sch.split(vec.loop, factors=[None, vec_factor])
        outer_of[id(vec)] = v_outer
        inner.append(v_inner)
        outer = []
        for axis in plan.spatial:
            if id(axis) in outer_of:
                if outer_of[id(axis)] is not None:
                    outer.append(outer_of[id(axis)])
            else:
                outer.append(axis.loop)
        order = outer + [a.loop for a in plan.reduction] + inner
        if len(order) > 1:
            sch.reorder(*order)
        fused = None
        if outer:
            fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        sch.vectorize(v_inner)
        if fused is not None and plan.work >= MIN_PARALLEL_WORK and (is_reduction or "injnopar" not in self.mode):
            sch.parallel(fused)
        if is_reduction:
            if tile is not None and "nounroll" not in self.mode:
                sch.unroll(inner[0])  # the tile's accumulators side by side
            sch.decompose_reduction(block_rv, plan.reduction[0].loop)
        return True


def _root_blocks(sch):
    func = sch.mod["main"]
    root = func.body.block if hasattr(func.body, "block") else None
    if root is None:
        return None
    return sch.get_child_blocks(sch.get_sblock(root.name_hint))


def _rowwise(plans: list[_BlockPlan]) -> bool:
    """Whether dlight's CPU Reduction rule suits these blocks: no guarded (padding) block,
    and every reduction reads along its input's innermost dimension (softmax, mean, norms).
    That rule also matches convolutions and matmuls with a [K, N] weight, where it runs
    strided dot products: slower than the default rule."""
    if any(p.has_if_then_else for p in plans):
        return False
    for plan in plans:
        red_vars = {a.var for a in plan.axes if not a.spatial}
        for load in plan.reads:
            if not load.indices:
                continue
            uses = any(_depends_on(i, v) for i in load.indices for v in red_vars)
            if uses and load.indices[-1] not in red_vars:
                return False
    return True


def _dlight(func, target, plans: list[_BlockPlan]):
    """dlight's CPU rules (GEMV, then Reduction where `_rowwise` holds) for functions whose
    every block passed the soundness check (those rules move blocks under shared loops)."""
    from tvm.s_tir.dlight import cpu as dl_cpu

    rules = [dl_cpu.GEMV()]
    if _rowwise(plans):
        rules.append(dl_cpu.Reduction())
    for rule in rules:
        try:
            sch = rule.apply(func, target, False)
        except Exception:  # noqa: BLE001 - the rule does not apply
            continue
        if isinstance(sch, list):
            sch = sch[0] if len(sch) == 1 else None
        if sch is not None:
            return sch, f"dlight.{type(rule).__name__}"
    return None, ""


def schedule_prim_func_report(func, target: Any = None, use_dlight: bool = True):
    """``(scheduled PrimFunc, FuncReport)``; on any error the PrimFunc comes back unchanged."""
    from tvm import s_tir, tirx

    target = resolve_target(target)
    if not isinstance(func, tirx.PrimFunc):
        return func, FuncReport("untouched", reason="not a PrimFunc")
    if target is None or target.kind.name != "llvm":
        return func, FuncReport("untouched", reason="not an LLVM target")
    if func.attrs is not None and SCHEDULED_ATTR in func.attrs and int(func.attrs[SCHEDULED_ATTR]):
        return func, FuncReport("untouched", reason="already scheduled")
    try:
        rules = _Rules(target)
        sch = s_tir.Schedule(func)
        blocks = _root_blocks(sch)
        if not blocks:
            return func, FuncReport("untouched", reason="no blocks under the root block")
        plans, serial = [], []
        for block_rv in blocks:
            try:
                plans.append((block_rv, _analyse_block(sch, block_rv)))
            except _NotEligible as why:
                serial.append(f"{sch.get(block_rv).name_hint}: {why}")
        if use_dlight and not serial and any(plan.reduction for _, plan in plans):
            dl_sch, rule_name = _dlight(func, target, [plan for _, plan in plans])
            if dl_sch is not None:
                return _finish(dl_sch.mod["main"]), FuncReport("scheduled", rule_name)
        changed = False
        for block_rv, plan in plans:
            trial = sch.copy()
            try:
                done = rules.schedule_block(trial, block_rv, plan)
            except Exception as err:  # noqa: BLE001 - keep this block as it was
                serial.append(f"{plan.name}: schedule failed ({type(err).__name__})")
                continue
            if done:
                sch, changed = trial, True
        if not changed:
            return func, FuncReport("untouched", reason="no block worth scheduling", serial_blocks=serial)
        return _finish(sch.mod["main"]), FuncReport("scheduled", "default", serial_blocks=serial)
    except Exception as err:  # noqa: BLE001 - any error: the function stays unscheduled
        text = str(err).strip().splitlines()
        return func, FuncReport("failed", reason=f"{type(err).__name__}: {text[0] if text else ''}"[:300])


def _finish(func):
    import tvm

    tvm.s_tir.analysis.verify_well_formed(func, True)
    return func.with_attr(SCHEDULED_ATTR, True)


def schedule_prim_func(func, target: Any = None):
    """``func`` with the default CPU schedule for ``target`` (unchanged on any error)."""
    return schedule_prim_func_report(func, target)[0]


def schedule_module(mod, target: Any = None, use_dlight: bool = True):
    """``(new module, ScheduleStats)``: every PrimFunc of ``mod`` scheduled for ``target``.
    ``mod`` itself is not modified; a non-LLVM target gives ``mod`` back unchanged."""
    import tvm
    from tvm import tirx

    stats = ScheduleStats()
    target = resolve_target(target)
    if target is None or target.kind.name != "llvm":
        stats.skipped_target = True
        return mod, stats
    updates = {}
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        name = gv.name_hint
        new_func, report = schedule_prim_func_report(func, target, use_dlight=use_dlight)
        if report.serial_blocks:
            stats.serial_blocks[name] = report.serial_blocks
        if report.status == "scheduled":
            stats.scheduled.append(name)
            stats.rules[name] = report.rule
            updates[gv] = new_func
        elif report.status == "failed":
            stats.failed[name] = report.reason
        else:
            stats.untouched.append(name)
    if not updates:
        return mod, stats
    out = tvm.IRModule(mod.functions, mod.attrs, mod.global_infos)
    for gv, func in updates.items():
        out[gv] = func
    return out, stats


def default_schedule_pass(target: Any = None, use_dlight: bool = True, stats: ScheduleStats | None = None):
    """A module pass giving every PrimFunc the default CPU schedule for ``target``
    (a target dict, ``tvm.target.Target``, MutateNN ``build.Target``, or None for the
    target in scope). Each run adds what it did to ``stats`` (also ``pass.stats``)."""
    import tvm

    record = stats if stats is not None else ScheduleStats()
    fixed = resolve_target(target) if target is not None else None

    @tvm.transform.module_pass(opt_level=0, name="MutateNNDefaultSchedule")
    class _DefaultSchedule:
        def __init__(self):
            self.stats = record

        def transform_module(self, mod, _ctx):
            chosen = fixed if fixed is not None else resolve_target(None)
            new_mod, run_stats = schedule_module(mod, chosen, use_dlight=use_dlight)
            self.stats.merge(run_stats)
            return new_mod

    return _DefaultSchedule()
