"""A sound default CPU schedule for the fused TensorIR PrimFuncs of a Relax module.

Untuned LLVM code runs every PrimFunc as naive serial loops. `default_schedule_pass` gives
each PrimFunc a rule-based schedule (TVM-NOTES, "Schedules and tuning"), block by block:

* reduction blocks (convolution, matmul, pooling): the outer spatial loops fused and
  ``parallel``; the reduction loops next, in their original order; then a register tile of
  8 (16 with AVX-512) on a second spatial axis, unrolled; innermost the spatial lane that
  indexes the output's last dimension, ``vectorize``d with as many fp32 lanes as the
  target's SIMD registers hold (16 AVX-512, 8 AVX/AVX2, 4 SSE/NEON; a lane axis of 7 or 14
  is vectorised whole, 56 as 4 x 14); then ``decompose_reduction`` (after ``vectorize``,
  as TVM-NOTES records). A lane axis with no divisor filling half a register (35, 71, 149
  in inception_v3) is ``loop_partition``ed into full vectors and one shorter tail vector;
* injective blocks (batch-norm arithmetic, activations, adds): the same without the
  reduction loops and tile, with a power-of-two number of lanes;
* blocks with fewer than `MIN_PARALLEL_WORK` loop iterations are vectorised but not
  parallelised;
* blocks where TVM's vector lane would be a gather (the lane axis strides through an input,
  as in depthwise or pooling layers with stride 2, and no register tile pays for it), and
  padding blocks, keep their loops: LLVM's own loop vectoriser does better on them than
  TVM's lane-by-lane loads, and only while the loop is not inside a ``parallel`` closure
  (there it loses the no-alias facts it needs). Padding is never inlined into the
  convolution (its ``if_then_else`` inside a vector lane costs ~6x);
* functions whose every block passed the soundness check below may instead get dlight's
  CPU ``Reduction`` rule, when they are row-wise reductions (mean, softmax, norms) whose
  declared regions match their bodies. (dlight's CPU ``GEMV`` rule is not used: see
  `_dlight`.)

Soundness first, because the PrimFuncs may be mutants (a loop bound changed, a comparison
swapped, an index shifted, a stored value altered). A block is rescheduled only when:

* it is a leaf block with a perfect loop nest of its own: one loop per block iterator,
  each loop starting at 0 and running over exactly the iterator's declared domain (so
  ``decompose_reduction`` initialises exactly what the unscheduled init would have);
* every iterator is declared spatial or reduction;
* its body is one buffer store (bounds-check asserts before it are allowed), the init
  stores to the same element, and the store's indices are distinct spatial iterators
  covering every non-unit spatial iterator: a one-to-one map, so no two parallel
  iterations or vector lanes write the same element;
* it reads its own output only at the element it writes (the accumulator).

Every other block keeps its loops as they are. Loops are only split, reordered, fused and
annotated; no block is inlined into or computed at another (except by the gated dlight
rules), and each reduction still visits its terms in the original order, so scheduled and
unscheduled builds of a program that stays in bounds give bit-identical results. A
mutant that reads out of bounds, or reads memory it never wrote (a loop-bound mutant that
skips part of an output), may read different garbage in the two builds: such mutants give
different outputs from one run to the next even unscheduled.

Insert the pass after ``FuseTIR`` and before the VM lowering passes of a Relax pipeline::

    passes += [relax.transform.FuseOps(), relax.transform.FuseTIR()]
    passes.append(schedules.default_schedule_pass(target))  # target dict or Target
    passes += [relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(), ...]

Non-LLVM targets are left alone (the pass returns the module unchanged). Any error while
scheduling a PrimFunc keeps that PrimFunc unscheduled; `ScheduleStats` says what happened.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FuncReport",
    "ScheduleStats",
    "default_schedule_pass",
    "is_llvm_target",
    "resolve_target",
    "schedule_module",
    "schedule_prim_func",
    "schedule_prim_func_report",
    "vector_bits",
]

# A parallel launch costs microseconds: blocks with fewer loop iterations than this
# (all loops, reduction included) stay serial.
MIN_PARALLEL_WORK = 1 << 14
SCHEDULED_ATTR = "tirx.is_scheduled"


# ---------------------------------------------------------------- targets

def resolve_target(target: Any = None):
    """A ``tvm.target.Target`` from a dict, a Target, an object with ``tvm_target()``
    (MutateNN's `build.Target`), a string, or None (the target in scope, if any)."""
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


def vector_bits(target: Any) -> int:
    """Width in bits of the target's SIMD registers, from its ``mcpu`` (and ``mattr``):
    512 with AVX-512, 256 with AVX/AVX2, 128 otherwise (plain x86-64 = SSE2, NEON)."""
    from tvm.target.codegen import target_has_features

    target = resolve_target(target)

    def has(feature: str) -> bool:
        try:
            return bool(target_has_features(feature, target))
        except Exception:  # noqa: BLE001 - a feature this architecture does not know
            return False

    # tvm.target.codegen.llvm_get_vector_width answers 512 for every x86 mcpu in TVM 0.27,
    # x86-64 included, so the width is read from the CPU's features instead.
    if has("avx512f"):
        return 512
    if has("avx2") or has("avx"):
        return 256
    return 128


# ---------------------------------------------------------------- statistics

@dataclass
class ScheduleStats:
    """What scheduling did, by PrimFunc name (one pass run, or several merged)."""

    scheduled: list[str] = field(default_factory=list)  # at least one block rescheduled
    untouched: list[str] = field(default_factory=list)  # no block eligible or worth it
    failed: dict[str, str] = field(default_factory=dict)  # error: kept unscheduled
    rules: dict[str, str] = field(default_factory=dict)  # scheduled name -> rule
    # name -> ["block: why"] for blocks the soundness check (or a failing primitive) left as they were
    kept_blocks: dict[str, list[str]] = field(default_factory=dict)
    skipped_target: bool = False  # not an LLVM target: nothing was looked at

    @property
    def num_scheduled(self) -> int:
        return len(self.scheduled)

    @property
    def num_left_alone(self) -> int:
        return len(self.untouched) + len(self.failed)

    @property
    def num_kept_blocks(self) -> int:
        return sum(len(v) for v in self.kept_blocks.values())

    def merge(self, other: "ScheduleStats") -> None:
        self.scheduled += other.scheduled
        self.untouched += other.untouched
        self.failed.update(other.failed)
        self.rules.update(other.rules)
        self.kept_blocks.update(other.kept_blocks)
        self.skipped_target = self.skipped_target or other.skipped_target

    def summary(self) -> str:
        if self.skipped_target:
            return "no LLVM target (none given, none in scope, or another kind): nothing scheduled"
        return (f"{self.num_scheduled} PrimFuncs scheduled, {len(self.untouched)} left alone, "
                f"{len(self.failed)} failed (kept unscheduled); "
                f"{self.num_kept_blocks} blocks kept as they were by the soundness check or a failed primitive")


@dataclass
class FuncReport:
    """The outcome for one PrimFunc."""

    status: str  # "scheduled", "untouched" or "failed"
    rule: str = ""  # "default" or "dlight.Reduction"
    reason: str = ""
    kept_blocks: list[str] = field(default_factory=list)  # "block: why it kept its loops"


# ---------------------------------------------------------------- block analysis

def _int(expr) -> int | None:
    from tvm import tirx

    return int(expr.value) if isinstance(expr, tirx.IntImm) else None


def _same(a, b) -> bool:
    import tvm_ffi

    return bool(tvm_ffi.structural_equal(a, b))


def _same_indices(a, b) -> bool:
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))


def _collect(root, types) -> list:
    import tvm_ffi

    found: list = []
    tvm_ffi.structural_walk(root, (types, found.append))
    return found


def _depends_on(expr, var) -> bool:
    from tvm import tirx

    return any(v.same_as(var) for v in _collect(expr, tirx.Var))


@dataclass
class _Axis:
    var: Any  # the block iterator
    loop: Any  # its LoopRV
    extent: int
    spatial: bool


@dataclass
class _BlockPlan:
    name: str
    axes: list[_Axis]  # loop order, outermost first, unit loops included
    store_indices: list
    buffer_shape: list
    dtype_bits: int
    reads: list  # TensorLoads of other buffers in the stored value
    guarded: bool  # the value has an if_then_else (padding)
    regions_match: bool  # declared reads/writes are exactly the body's accesses
    work: int  # product of all loop extents

    @property
    def spatial(self) -> list[_Axis]:
        return [a for a in self.axes if a.spatial and a.extent > 1]

    @property
    def reduction(self) -> list[_Axis]:
        return [a for a in self.axes if not a.spatial and a.extent > 1]


class _NotEligible(Exception):
    """The block keeps its loops; the message says why."""


def _block_realize(sch, block_rv):
    import tvm_ffi

    return tvm_ffi.get_global_func("s_tir.schedule.GetSBlockRealize")(sch, block_rv)


def _split_body(body) -> tuple[list, Any]:
    """(asserts, store) of a body made of AssertStmts followed by one BufferStore."""
    from tvm import tirx

    stmts = list(body.seq) if isinstance(body, tirx.SeqStmt) else [body]
    asserts = [s for s in stmts[:-1] if isinstance(s, tirx.AssertStmt)]
    if len(asserts) != len(stmts) - 1 or not isinstance(stmts[-1], tirx.BufferStore):
        raise _NotEligible("body is not one buffer store")
    return asserts, stmts[-1]


def _analyse_block(sch, block_rv) -> _BlockPlan:
    """The plan of a block whose loops may be reordered, parallelised and vectorised;
    raises _NotEligible when anything differs from the plain legalised form."""
    import tvm
    from tvm import tirx

    block = sch.get(block_rv)
    if len(block.alloc_buffers) or len(block.match_buffers):
        raise _NotEligible("allocates or matches buffers")
    realize = _block_realize(sch, block_rv)
    if _int(realize.predicate) != 1:
        raise _NotEligible("has a predicate")
    loops = sch.get_loops(block_rv)
    fors = [sch.get(loop) for loop in loops]
    for outer, inner in zip(fors, fors[1:]):
        if not outer.body.same_as(inner):
            raise _NotEligible("loop nest is not perfect")
    if fors and not fors[-1].body.same_as(realize):
        raise _NotEligible("loop nest is not perfect")
    for f in fors:
        if f.kind != tirx.ForKind.SERIAL or len(f.annotations) or f.thread_binding is not None:
            raise _NotEligible("loops already scheduled")
        if _int(f.min) != 0 or _int(f.extent) is None:
            raise _NotEligible("a loop does not run from 0 over a constant extent")
        step = getattr(f, "step", None)
        if step is not None and _int(step) != 1:
            raise _NotEligible("a loop has a step")
    if len(block.iter_vars) != len(fors):
        raise _NotEligible("iterators and loops differ in number")
    position = {f.loop_var: i for i, f in enumerate(fors)}
    axes: list = [None] * len(fors)
    for iv, value in zip(block.iter_vars, realize.iter_values):
        if iv.iter_type not in (tirx.IterVar.DataPar, tirx.IterVar.CommReduce):
            raise _NotEligible("an iterator is neither spatial nor reduction")
        if not isinstance(value, tirx.Var) or value not in position:
            raise _NotEligible("an iterator is not bound to one loop")
        i = position[value]
        if axes[i] is not None:
            raise _NotEligible("a loop is bound to two iterators")
        extent = _int(fors[i].extent)
        if _int(iv.dom.min) != 0 or _int(iv.dom.extent) != extent:
            raise _NotEligible("a loop's range differs from its iterator's domain")
        axes[i] = _Axis(iv.var, loops[i], extent, iv.iter_type == tirx.IterVar.DataPar)
    if len(block.writes) != 1:
        raise _NotEligible("writes more than one buffer")
    asserts, store = _split_body(block.body)
    stores = [store]
    if block.init is not None:
        stores.append(_split_body(block.init)[1])
    buffer = store.buffer
    indices = list(store.indices)
    for other in stores[1:]:
        if not other.buffer.same_as(buffer) or not _same_indices(other.indices, indices):
            raise _NotEligible("init and update store to different elements")
    # One-to-one write: each non-unit spatial iterator is one whole index, once.
    spatial = {a.var for a in axes if a.spatial}
    seen = set()
    for index in indices:
        if isinstance(index, tirx.IntImm):
            continue
        if not isinstance(index, tirx.Var) or index not in spatial:
            raise _NotEligible("a store index is not a spatial iterator")
        if index in seen:
            raise _NotEligible("a store index repeats an iterator")
        seen.add(index)
    if any(a.spatial and a.extent > 1 and a.var not in seen for a in axes):
        raise _NotEligible("the store does not depend on every spatial iterator")
    loads = []
    for root in [s.value for s in stores] + [a.condition for a in asserts]:
        loads += _collect(root, tvm.ir.expr.TensorLoad)
    own = [ld for ld in loads if ld.source.same_as(buffer)]
    if any(not _same_indices(ld.indices, indices) for ld in own):
        raise _NotEligible("reads its own output at another element")
    reduction = any(not a.spatial for a in axes)
    if reduction and not own:
        raise _NotEligible("a reduction that does not accumulate")
    guarded = any(getattr(c.op, "name", "") == "prim.if_then_else"
                  for c in _collect(store.value, tvm.ir.Call))
    reads = [ld for ld in loads if not ld.source.same_as(buffer)]
    work = 1
    for a in axes:
        work *= a.extent
    return _BlockPlan(block.name_hint, axes, indices, [_int(d) for d in buffer.shape],
                      _dtype_bits(buffer), reads, guarded,
                      _regions_match(block, buffer, indices, reads), work)


def _regions_match(block, buffer, indices, reads) -> bool:
    """Whether the block's declared T.reads / T.writes are exactly the elements its body
    touches. A mutant that shifts an index in the body keeps the old declaration, and
    primitives that move blocks (compute_at, used by dlight's rules) trust it."""
    write = block.writes[0]
    if not write.source.same_as(buffer) or not _point_region(write, indices):
        return False
    declared = [r for r in block.reads if not r.source.same_as(buffer)]
    if len(declared) > len(reads):
        return False
    for load in reads:
        if not any(r.source.same_as(load.source) and _point_region(r, load.indices) for r in declared):
            return False
    return True


def _point_region(region, indices) -> bool:
    ranges = list(region.region)
    return len(ranges) == len(indices) and all(
        _int(r.extent) == 1 and _same(r.min, i) for r, i in zip(ranges, indices))


def _dtype_bits(buffer) -> int:
    digits = "".join(ch for ch in str(buffer.dtype) if ch.isdigit())
    return int(digits) if digits else 32


# ---------------------------------------------------------------- the default rule

def _largest_divisor(n: int, limit: int) -> int:
    for d in range(min(n, limit), 0, -1):
        if n % d == 0:
            return d
    return 1


def _vector_axis(plan: _BlockPlan) -> _Axis | None:
    """The spatial axis that indexes the output's innermost non-unit dimension."""
    for index, dim in zip(reversed(plan.store_indices), reversed(plan.buffer_shape)):
        axis = next((a for a in plan.axes if a.var.same_as(index)), None)
        if axis is not None and axis.extent > 1:
            return axis
        if dim != 1:
            return None  # a constant index on a wider dimension: the lane would stride
    return None


def _contiguous(plan: _BlockPlan, vec: _Axis) -> bool:
    """Whether every read that depends on the lane axis reads consecutive elements along it
    (the axis only in the last index, with coefficient 1). TVM loads any other vector one
    lane at a time."""
    import tvm

    for load in plan.reads:
        for pos, index in enumerate(load.indices):
            if not _depends_on(index, vec.var):
                continue
            if pos != len(load.indices) - 1:
                return False
            coeffs = tvm.sym.detect_linear_equation(index, [vec.var])
            if len(coeffs) != 2 or _int(tvm.sym.Analyzer().simplify(coeffs[0])) != 1:
                return False
    return True


def _tile_axis(plan: _BlockPlan, vec: _Axis) -> _Axis | None:
    """A second spatial axis that no read indexed by the lane axis depends on, so one
    vector load serves the whole tile (for NCHW convolution: the output channels)."""
    vector_reads = [ld for ld in plan.reads if any(_depends_on(i, vec.var) for i in ld.indices)]
    best = None
    for axis in plan.spatial:
        if axis is vec or any(_depends_on(i, axis.var) for ld in vector_reads for i in ld.indices):
            continue
        if best is None or axis.extent > best.extent:
            best = axis
    return best


def _lanes_for(extent: int, lanes: int, power_of_two: bool) -> int:
    """Vector factor for an axis of ``extent`` on ``lanes``-wide registers: the largest
    power of two dividing it, or (reductions, where odd widths 7/14 are common) the whole
    axis when it fits, else its largest divisor of at least half a register."""
    if power_of_two:
        factor = 1
        while factor * 2 <= lanes and extent % (factor * 2) == 0:
            factor *= 2
        return factor
    if extent <= lanes:
        return extent
    divisor = _largest_divisor(extent, lanes)
    return divisor if divisor * 2 >= lanes else 1


class _DefaultRule:
    def __init__(self, target):
        self.bits = vector_bits(target)
        self.tile = 16 if self.bits >= 512 else 8  # 32 vector registers with AVX-512, else 16

    def apply(self, sch, block_rv, plan: _BlockPlan) -> bool:
        """Reschedule one eligible block in ``sch``; False when it keeps its loops."""
        if not plan.spatial or plan.guarded:
            return False
        vec = _vector_axis(plan)
        if vec is None:
            return False
        lanes = max(self.bits // max(plan.dtype_bits, 8), 1)
        contiguous = _contiguous(plan, vec)
        tile = None
        if plan.reduction:
            tile = _tile_axis(plan, vec)
            if not contiguous and tile is None:
                return False  # gathers without register reuse: LLVM's vectoriser does better
        elif not contiguous:
            return False
        factor = _lanes_for(vec.extent, lanes, power_of_two=not plan.reduction)
        # A reduction over an awkward width (35, 71, 147, 149 in inception_v3) with no
        # divisor of at least half a register: full vectors, then a shorter tail vector.
        partition = factor < 2 and bool(plan.reduction) and vec.extent > lanes
        if factor < 2 and not partition:
            return False
        tile_factor = _largest_divisor(tile.extent, self.tile) if tile is not None else 1
        if tile_factor < 2:
            tile = None

        outer_of, inner = {}, []
        if tile is not None:
            outer_of[id(tile)], t_inner = sch.split(tile.loop, factors=[None, tile_factor])
            inner.append(t_inner)
        if partition or factor == vec.extent:
            outer_of[id(vec)], v_inner = None, vec.loop
        else:
            outer_of[id(vec)], v_inner = sch.split(vec.loop, factors=[None, factor])
        inner.append(v_inner)
        outer = []
        for axis in plan.spatial:
            loop = outer_of.get(id(axis), axis.loop)
            if loop is not None:
                outer.append(loop)
        order = outer + [a.loop for a in plan.reduction] + inner
        if len(order) > 1:
            sch.reorder(*order)
        fused = None
        if outer:
            fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if fused is not None and plan.work >= MIN_PARALLEL_WORK:
            sch.parallel(fused)
        if tile is not None:
            sch.unroll(inner[0])  # the tile's accumulators side by side, in registers
        if partition:
            # Each part keeps the block's T.init (decompose_reduction cannot reach across
            # the partition blocks); it lowers to an `if` outside the vector lanes.
            main = vec.extent - vec.extent % lanes
            body, tail = sch.loop_partition(v_inner, [main, None])
            sch.vectorize(sch.split(body, factors=[None, lanes])[1])
            if vec.extent - main >= 2:
                sch.vectorize(tail)
            return True
        sch.vectorize(v_inner)  # before decompose_reduction: the other order raises
        if plan.reduction:
            sch.decompose_reduction(block_rv, plan.reduction[0].loop)
        return True


# ---------------------------------------------------------------- dlight's CPU rules

def _rowwise(plans: list[_BlockPlan]) -> bool:
    """Whether dlight's CPU Reduction rule suits these blocks: no padding, and every
    reduction reads along its inputs' innermost dimension (mean, softmax, norms). The rule
    also matches convolutions and [K, N]-weight matmuls, where its strided dot products
    are slower than the default rule."""
    if any(p.guarded for p in plans):
        return False
    for plan in plans:
        reduce_vars = [a.var for a in plan.axes if not a.spatial]
        for load in plan.reads:
            uses = any(_depends_on(i, v) for i in load.indices for v in reduce_vars)
            if uses and not any(load.indices[-1].same_as(v) for v in reduce_vars):
                return False
    return True


def _dlight(func, target, plans: list[_BlockPlan]):
    """dlight's CPU Reduction rule where `_rowwise` holds: ``(schedule, rule name)`` or
    ``(None, "")``.

    dlight's CPU GEMV rule is not used: on efficientnet_b0's squeeze-excitation 1x1
    convolutions it vectorises a 128-lane loop around the reduction (with a ``T.where``
    tail predicate) and LLVM did not finish compiling one such function in minutes."""
    from tvm.s_tir.dlight import cpu as dl_cpu

    if not _rowwise(plans):
        return None, ""
    rule = dl_cpu.Reduction()
    try:
        sch = rule.apply(func, target, False)
    except Exception:  # noqa: BLE001 - the rule does not apply
        return None, ""
    if isinstance(sch, list):
        sch = sch[0] if len(sch) == 1 else None
    return (sch, "dlight.Reduction") if sch is not None else (None, "")


# ---------------------------------------------------------------- entry points

def _root_blocks(sch) -> list:
    from tvm import s_tir

    body = sch.mod["main"].body
    if not isinstance(body, s_tir.SBlockRealize):
        return []
    return list(sch.get_child_blocks(sch.get_sblock(body.block.name_hint)))


def schedule_prim_func_report(func, target: Any = None, use_dlight: bool = True):
    """``(PrimFunc, FuncReport)``: ``func`` with the default CPU schedule for ``target``,
    or ``func`` itself (unchanged) when nothing applies or anything fails."""
    from tvm import s_tir, tirx

    target = resolve_target(target)
    if not isinstance(func, tirx.PrimFunc):
        return func, FuncReport("untouched", reason="not a PrimFunc")
    if target is None or target.kind.name != "llvm":
        return func, FuncReport("untouched", reason="not an LLVM target")
    attrs = func.attrs
    if attrs is not None and SCHEDULED_ATTR in attrs and int(attrs[SCHEDULED_ATTR]):
        return func, FuncReport("untouched", reason="already scheduled")
    own_target = attrs.get("target") if attrs is not None else None
    if own_target is not None and own_target.kind.name != "llvm":
        return func, FuncReport("untouched", reason="the PrimFunc names a non-LLVM target")
    try:
        sch = s_tir.Schedule(func)
        blocks = _root_blocks(sch)
        if not blocks:
            return func, FuncReport("untouched", reason="no blocks under a root block")
        plans, kept = [], []
        for block_rv in blocks:
            try:
                plans.append((block_rv, _analyse_block(sch, block_rv)))
            except _NotEligible as why:
                kept.append(f"{sch.get(block_rv).name_hint}: {why}")
        if (use_dlight and not kept and any(p.reduction for _, p in plans)
                and all(p.regions_match for _, p in plans)):
            dl_sch, rule = _dlight(func, target, [p for _, p in plans])
            if dl_sch is not None:
                return _finish(dl_sch.mod["main"]), FuncReport("scheduled", rule)
        rule = _DefaultRule(target)
        changed = False
        for block_rv, plan in plans:
            trial = sch.copy()  # a failing primitive leaves the committed schedule intact
            try:
                done = rule.apply(trial, block_rv, plan)
            except Exception as err:  # noqa: BLE001 - this block keeps its loops
                kept.append(f"{plan.name}: schedule failed ({type(err).__name__})")
                continue
            if done:
                sch, changed = trial, True
        if not changed:
            return func, FuncReport("untouched", reason="no block worth scheduling", kept_blocks=kept)
        return _finish(sch.mod["main"]), FuncReport("scheduled", "default", kept_blocks=kept)
    except Exception as err:  # noqa: BLE001 - any error: the PrimFunc stays unscheduled
        lines = str(err).strip().splitlines()
        return func, FuncReport("failed", reason=f"{type(err).__name__}: {lines[0] if lines else ''}"[:300])


def _finish(func):
    import tvm

    tvm.s_tir.analysis.verify_well_formed(func, True)
    return func.with_attr(SCHEDULED_ATTR, True)


_MEMO: dict = {}
_MEMO_LIMIT = 4096


def _memoised_report(func, target, use_dlight: bool):
    """`schedule_prim_func_report`, remembered per process: a campaign builds the same
    unchanged kernels once per mutant, and scheduling them is a third of a shared build."""
    import tvm_ffi

    key = (tvm_ffi.structural_hash(func), str(target), use_dlight)
    hit = _MEMO.get(key)
    if hit is not None and tvm_ffi.structural_equal(hit[0], func):
        return hit[1], hit[2]
    new_func, report = schedule_prim_func_report(func, target, use_dlight)
    if len(_MEMO) >= _MEMO_LIMIT:
        _MEMO.clear()
    _MEMO[key] = (func, new_func, report)
    return new_func, report


def schedule_prim_func(func, target: Any = None, use_dlight: bool = True):
    """``func`` with the default CPU schedule for ``target`` (unchanged on any error)."""
    return schedule_prim_func_report(func, target, use_dlight)[0]


def schedule_module(mod, target: Any = None, use_dlight: bool = True):
    """``(module, ScheduleStats)``: every PrimFunc of ``mod`` given the default CPU
    schedule for ``target``. ``mod`` itself is not modified; for a non-LLVM target (or
    none given and none in scope) ``mod`` comes back as is."""
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
        new_func, report = _memoised_report(func, target, use_dlight)
        if report.kept_blocks:
            stats.kept_blocks[name] = report.kept_blocks
        if report.status == "scheduled":
            stats.scheduled.append(name)
            stats.rules[name] = report.rule
            updates[gv] = new_func
        elif report.status == "failed":
            stats.failed[name] = report.reason
        else:
            stats.untouched.append(name)
    return with_functions(mod, updates), stats


def with_functions(mod, updates: dict):
    """A copy of ``mod`` with the functions in ``updates`` (GlobalVar -> function) replaced
    (``mod`` itself when there are none): passes must not modify their input module."""
    import tvm

    if not updates:
        return mod
    out = tvm.IRModule(mod.functions, mod.attrs, mod.global_infos)
    for gv, func in updates.items():
        out[gv] = func
    return out


def default_schedule_pass(target: Any = None, use_dlight: bool = True,
                          stats: ScheduleStats | None = None):
    """A module pass (``tvm.transform.Pass``) giving every PrimFunc the default CPU
    schedule for ``target``: a target dict such as ``{"kind": "llvm", "mcpu": ...}``, a
    ``tvm.target.Target``, MutateNN's ``build.Target``, or None for the target in scope
    when the pass runs. Each run adds what it did to ``stats`` (also ``pass.stats``)."""
    import tvm

    record = stats if stats is not None else ScheduleStats()
    fixed = resolve_target(target) if target is not None else None

    @tvm.transform.module_pass(opt_level=0, name="MutateNNDefaultSchedule")
    class DefaultSchedule:
        def __init__(self):
            self.stats = record

        def transform_module(self, mod, _ctx):
            chosen = fixed if fixed is not None else resolve_target(None)
            new_mod, run = schedule_module(mod, chosen, use_dlight)
            self.stats.merge(run)
            return new_mod

    return DefaultSchedule()
