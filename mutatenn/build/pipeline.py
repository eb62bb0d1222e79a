"""Building: explicit Relax pipelines per optimisation level, compiled with shared kernels.

TVM 0.27's plain ``tvm.compile`` runs no fusion; MutateNN never relies on its default
pipeline. Every build, tuning's task extraction and every repro script take their passes
from `pipeline_passes`, which reads the one pass table (`mutators.passes.PIPELINE`), inside
a ``PassContext`` that honours ``disabled_pass`` / ``required_pass`` and carries the TIR
lowering options (`mutators.passes.TIR_OPTIONS`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mutators.passes import OPTIONAL_PASSES, PIPELINE, tir_config

from ..schedules import ScheduleStats
from .options import DEFAULT_SCHEDULE, BuildOptions
from .targets import Target

__all__ = ["BuildStats", "Kernels", "SharedBuild", "pipeline_passes", "relax_pipeline", "pass_context",
           "build_artifact", "build_with_kernels", "skipped_passes", "table_passes"]


@dataclass
class BuildStats:
    """What one build did to its kernels: scheduled by rule, left naive, tuned records hit
    or missed (by PrimFunc name). Filled in by the pipeline's schedule passes."""

    schedule: str = DEFAULT_SCHEDULE
    kernels: ScheduleStats = field(default_factory=ScheduleStats)  # the default schedule's own record
    tuned_hits: list[str] = field(default_factory=list)
    tuned_misses: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"schedule": self.schedule, "scheduled": len(self.kernels.scheduled),
                "untouched": len(self.kernels.untouched), "failed": len(self.kernels.failed),
                "tuned_hits": len(self.tuned_hits), "tuned_misses": len(self.tuned_misses)}


def schedule_passes(target: Target, options: BuildOptions, stats: BuildStats) -> list:
    """The passes that give the fused PrimFuncs their loop schedule (after FuseTIR, so a
    TIR mutant is mutated first and scheduled after, like the original)."""
    if target.spec["kind"] == "cuda":
        from tvm.s_tir import dlight as dl

        return [dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                        dl.gpu.GeneralReduction(), dl.gpu.Fallback())]
    if options.schedule == "none":
        return []
    from .. import schedules

    passes = []
    if options.schedule == "tuned":
        from ..tuning.records import apply_database_pass

        passes.append(apply_database_pass(options.tuning_db, target.spec, _TunedInto(stats)))
    passes.append(schedules.default_schedule_pass(target.spec, stats=stats.kernels))
    return passes


class _TunedInto:
    """Adapter: the tuned-records pass merges its hits and misses into a `BuildStats`."""

    def __init__(self, stats: BuildStats):
        self.stats = stats

    def merge(self, run) -> None:
        self.stats.tuned_hits += run.hits
        self.stats.tuned_misses += run.misses


def table_passes(options: BuildOptions) -> list:
    """The pass table's passes (`mutators.passes.PIPELINE`) this build runs, in pipeline
    order: exactly ``options.passes()`` of the optional ones and every other one
    (PassContext(disabled_pass=...) says the same for OPTIONAL_PASSES; it cannot for
    every pass: DecomposeOpsForInference calls itself "DecomposeOps")."""
    runs = set(options.passes())
    return [spec for spec in PIPELINE if not spec.optional or spec.name in runs]


def pipeline_passes(target: Target, options: BuildOptions, stats: BuildStats | None = None,
                    stop_after: str = "") -> list:
    """Every pass of a build of ``options`` for ``target``, in order: the one list that
    builds, tuning's task extraction (``stop_after="FuseTIR"``) and repro scripts share."""
    from tvm import relax

    stats = stats if stats is not None else BuildStats(options.schedule)
    passes = [relax.backend.DispatchSampling(), relax.backend.DispatchSortScan()]
    for spec in table_passes(options):
        if spec.name == "FoldConstant" and options.bounds_check:  # constant kernels run with poison too
            from ..poison import folding_passes

            passes += folding_passes(spec.create())
        else:
            passes.append(spec.create())
        if spec.name == stop_after:
            return passes
    if options.bounds_check:  # on the fused (possibly mutated) PrimFuncs, before scheduling and flattening
        from ..bounds import bounds_check_pass

        passes.append(bounds_check_pass())
    passes += schedule_passes(target, options, stats)
    if options.bounds_check:  # checked loops stay serial: TVM loses a failed check in a parallel loop
        from ..bounds import serial_checks_pass

        passes.append(serial_checks_pass())
        from ..poison import poison_pass  # around the scheduled body: unwritten elements read as poison

        passes.append(poison_pass())
    passes += [
        relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(),
        relax.transform.RemovePurityChecking(), relax.transform.CallTIRRewrite(),
        relax.transform.StaticPlanBlockMemory(), relax.transform.LowerAllocTensor(),
        relax.transform.KillAfterLastUse(), relax.transform.LowerRuntimeBuiltin(),
        relax.transform.ComputePrimValue(), relax.transform.VMShapeLower(),
        relax.transform.AttachGlobalSymbol(),
    ]
    return passes


def relax_pipeline(target: Target, options: BuildOptions, stats: BuildStats | None = None):
    """`pipeline_passes` as one module pass run under the target (``tvm.compile``'s
    ``relax_pipeline``)."""
    import tvm

    passes = pipeline_passes(target, options, stats)
    tvm_target = target.tvm_target()

    @tvm.transform.module_pass(opt_level=0, name="MutateNNPipeline")
    def _pipeline(mod, _ctx):
        with tvm_target:
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def skipped_passes(options: BuildOptions) -> list[str]:
    """The opt-level passes a build of ``options`` does not run (the PassContext disables them by name)."""
    return [p for p in OPTIONAL_PASSES if p not in options.passes()]


def pass_context(options: BuildOptions, instruments=()):
    """The context every build of ``options`` runs in: the opt-level passes it does not
    run are disabled by name, and the TIR options go to the TIR pipeline as config."""
    import tvm

    return tvm.transform.PassContext(opt_level=3, disabled_pass=skipped_passes(options),
                                     instruments=list(instruments), config=tir_config(options.tir_options))


def build_artifact(mod, target: Target, options: BuildOptions, instruments=(), stats: BuildStats | None = None):
    """Compile a Relax module for a target; returns the TVM executable. ``stats``, when
    given, receives what the schedule passes did."""
    import tvm

    with pass_context(options, instruments):
        return tvm.compile(mod, target=target.tvm_target(), relax_pipeline=relax_pipeline(target, options, stats))


@dataclass
class Kernels:
    """A build's compiled TensorIR library and the PrimFuncs it was compiled from (by
    name): what a later build of a mutant can link against instead of recompiling."""

    lib: object  # tvm.runtime.Module
    funcs: dict  # name -> tvm.tirx.PrimFunc (as lowered by the Relax pipeline)
    hashes: dict = field(default_factory=dict, repr=False)  # name -> structural hash, filled on first use
    code: dict = field(default_factory=dict, repr=False)  # kernel names -> their LLVM module (`equivalence`), on first use

    def has(self, name: str, func) -> bool:
        """True when this library holds exactly ``func`` under ``name`` (the library's own
        hashes are computed once: every mutant of a campaign asks about every kernel)."""
        import tvm_ffi

        mine = self.funcs.get(name)
        if mine is None:
            return False
        if name not in self.hashes:
            self.hashes[name] = tvm_ffi.structural_hash(mine)
        return self.hashes[name] == tvm_ffi.structural_hash(func) and tvm_ffi.structural_equal(mine, func)


@dataclass
class SharedBuild:
    """What a build with shared kernels did: PrimFuncs compiled anew and taken from the library."""

    compiled: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


def build_with_kernels(mod, target: Target, options: BuildOptions, kernels: Kernels | None = None,
                       stats: BuildStats | None = None, shared: SharedBuild | None = None):
    """``(executable, Kernels)``: the same program `build_artifact` gives, but only the
    PrimFuncs that ``kernels`` does not hold (same name, structurally equal) go through
    TIR lowering and LLVM; the executable imports ``kernels.lib`` for the rest.

    A mutant changes one PrimFunc (TIR level) or a few bindings (graph level), yet a full
    build compiles every kernel again; LLVM is most of a build's time. The VM resolves a
    kernel by name in the executable's own library, then in its imports. A changed kernel
    that has a name of the library's is renamed first (``NAME_m1``), so the two libraries
    never define one symbol twice and the executable still exports as one ``.so``.
    For CPU (LLVM) targets; other targets build with `build_artifact`.
    """
    import tvm
    from tvm import relax
    from tvm.relax import vm_build

    tvm_target = target.tvm_target()
    with pass_context(options):
        with tvm_target:
            lowered = relax_pipeline(target, options, stats)(mod)
    prims = {gv.name_hint: f for gv, f in lowered.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    reuse = {n for n, f in prims.items() if kernels is not None and kernels.has(n, f)}
    record = shared if shared is not None else SharedBuild()
    record.reused += sorted(reuse)
    if kernels is not None:
        # A changed kernel keeps no name of the library's: one .so may hold both (export, RPC).
        lowered = _rename_prim_funcs(lowered, {n: _fresh_name(n, kernels.funcs) for n in prims
                                               if n not in reuse and n in kernels.funcs})
    funcs = {gv.name_hint: f for gv, f in lowered.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    record.compiled += sorted(set(funcs) - reuse)
    attrs = dict(lowered.attrs) if lowered.attrs else {}
    params = dict(attrs.get("const_name_to_constant", {}))
    builder = relax.ExecBuilder()
    rest = vm_build._vmcodegen(builder, lowered, "bytecode")
    fresh = {gv: f for gv, f in rest.functions.items() if isinstance(f, tvm.tirx.PrimFunc) and gv.name_hint not in reuse}
    lib = None
    if fresh:
        with pass_context(options):  # the TIR options reach this lowering too
            lib = tvm.tirx.build(tvm.IRModule(fresh, attrs=rest.attrs), target=tvm_target)
        if kernels is not None and reuse:
            lib.import_module(kernels.lib)
    elif kernels is not None:
        lib = kernels.lib
    ext_libs = list(attrs.get("external_mods", []))
    executable = vm_build.VMExecutable(vm_build._ffi_api.VMLink(builder, tvm_target, lib, ext_libs, params))
    return executable, Kernels(lib, funcs)


def _fresh_name(name: str, taken) -> str:
    number = 1
    while f"{name}_m{number}" in taken:
        number += 1
    return f"{name}_m{number}"


def _rename_prim_funcs(mod, names: dict):
    """``mod`` with the PrimFuncs named in ``names`` (old -> new) renamed, calls included."""
    if not names:
        return mod
    import tvm
    from tvm import relax

    builder = relax.BlockBuilder(mod)  # add_func gives each new GlobalVar its type
    new_vars = {old: builder.add_func(mod[old].with_attr("global_symbol", new), new) for old, new in names.items()}
    staged = builder.get()

    @relax.expr_functor.mutator
    class Renamer(relax.PyExprMutator):
        def visit_global_var_(self, op):
            return new_vars.get(op.name_hint, op)

    renamer = Renamer(staged)
    out = tvm.IRModule({}, attrs=mod.attrs, global_infos=mod.global_infos)
    for gv, func in staged.functions.items():
        if gv.name_hint in names:
            continue
        out[gv] = renamer.visit_expr(func) if isinstance(func, relax.Function) else func
    return out
