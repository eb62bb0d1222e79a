"""Deployment targets, build options and explicit Relax pipelines per optimisation level.

TVM 0.27's plain ``tvm.compile`` runs no fusion; MutateNN never relies on its default
pipeline. Each opt level is an explicit pass list (the one pass table is `mutators.passes.PIPELINE`), run
inside a ``PassContext`` so ``disabled_pass`` / ``required_pass`` are honoured; the
same context carries the TIR lowering options (`mutators.passes.TIR_OPTIONS`).
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from mutators.passes import (
    OPT_IN_PASSES,
    OPT_LEVEL_PASSES,
    OPTIONAL_PASSES,
    PIPELINE,
    SWITCHABLE_PASSES,
    TIR_OPTION_NAMES,
    tir_config,
    tir_options_canonical,
)

from .errors import InputError, TargetError
from .schedules import ScheduleStats

__all__ = ["OPT_LEVEL_PASSES", "OPTIONAL_PASSES", "OPT_IN_PASSES", "SWITCHABLE_PASSES", "TIR_OPTION_NAMES",
           "BuildOptions", "Target", "parse_target", "build_artifact"]
DEFAULT_OPT_LEVEL = 2
# How PrimFuncs get their loop schedule on LLVM targets: "none" (TVM's naive loops),
# "default" (MutateNN's rule-based schedule, `mutatenn.schedules`), "tuned" (MetaSchedule
# records from `mutatenn tune`, the default schedule for kernels without one).
SCHEDULES = ("none", "default", "tuned")
DEFAULT_SCHEDULE = "default"
CPU_TARGETS = {
    "cpu": None,  # the host CPU, named explicitly (mcpu=native is ignored by this LLVM build)
    "cpu-generic": "x86-64",
    "cpu-avx2": "haswell",
    "cpu-avx512": "skylake-avx512",
}
CPU_FEATURES = {"cpu-avx2": ("avx2", "fma"), "cpu-avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq")}
RPC_PATTERN = re.compile(r"^rpc://(?P<host>[^:/\s]+):(?P<port>\d+)(?:/(?P<target>[\w-]+))?$")
# Through a TVM RPC tracker: any free server registered under device key KEY runs the code.
TRACKER_PATTERN = re.compile(
    r"^rpc-tracker://(?P<host>[^:/\s]+):(?P<port>\d+)/(?P<key>[\w.-]+)(?:/(?P<target>[\w-]+))?$")
TRACKER_SYNTAX = "rpc-tracker://HOST:PORT/KEY[/TARGET]"


@dataclass(frozen=True)
class BuildOptions:
    """How a program is built: opt level, passes switched off or forced, fast math, the
    loop schedule (`SCHEDULES`; ``tuning_db`` is the tuning database of a "tuned" build),
    TIR lowering options (``tir_options``: sorted (name, value) pairs of
    `mutators.passes.TIR_OPTIONS`, TVM's defaults dropped; a dict is accepted) and
    ``bounds_check``: every buffer access asserted inside its buffer (`mutatenn.bounds`)."""

    opt_level: int = DEFAULT_OPT_LEVEL
    disabled_pass: tuple[str, ...] = ()
    required_pass: tuple[str, ...] = ()
    fast_math: bool | None = None  # None: as the opt level says (on at O3)
    schedule: str = DEFAULT_SCHEDULE
    tuning_db: str = ""
    tir_options: tuple = ()
    bounds_check: bool = False

    def __post_init__(self):
        if self.opt_level not in OPT_LEVEL_PASSES:
            raise InputError(f"opt level must be 0..3, not {self.opt_level!r}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        for name in self.disabled_pass + self.required_pass:
            if name not in SWITCHABLE_PASSES:
                raise InputError(f"unknown pass {name!r} (known: {', '.join(SWITCHABLE_PASSES)})")
        try:
            object.__setattr__(self, "tir_options", tir_options_canonical(self.tir_options))
        except (ValueError, TypeError) as err:
            raise InputError(f"tir_options: {err}") from None

    def with_overrides(self, overrides: dict) -> "BuildOptions":
        """These options changed by a pass mutant's overrides. Most replace the stack's
        value; ``disabled_pass``, ``required_pass`` and ``tir_options`` add to the stack's:
        a mutant differs from its stack in one way only (disabling FoldConstant on a stack
        without FuseTIR must not switch FuseTIR back on)."""
        fields = {"opt_level": self.opt_level, "disabled_pass": self.disabled_pass,
                  "required_pass": self.required_pass, "fast_math": self.fast_math,
                  "schedule": self.schedule, "tuning_db": self.tuning_db, "tir_options": self.tir_options,
                  "bounds_check": self.bounds_check}
        for key, value in overrides.items():
            if key not in fields:
                raise InputError(f"unknown build option {key!r}")
            if key in ("disabled_pass", "required_pass"):
                value = fields[key] + tuple(p for p in value if p not in fields[key])
            elif key == "tir_options":
                value = {**dict(self.tir_options), **_as_dict(value)}
            fields[key] = tuple(value) if isinstance(value, (list, tuple)) else value
        return BuildOptions(**fields)

    @property
    def uses_fast_math(self) -> bool:
        if self.fast_math is not None:
            return self.fast_math
        return self.opt_level >= 3 or "FastMathTransform" in self.required_pass

    def passes(self) -> tuple[str, ...]:
        """The switchable passes this build runs, in `SWITCHABLE_PASSES` order (the order
        of build keys; the pipeline runs them in `PIPELINE` order)."""
        wanted = set(OPT_LEVEL_PASSES[self.opt_level]) | set(self.required_pass)
        wanted.discard("FastMathTransform")
        if self.uses_fast_math:
            wanted.add("FastMathTransform")
        wanted -= set(self.disabled_pass)
        return tuple(p for p in SWITCHABLE_PASSES if p in wanted)

    def key(self) -> str:
        """What decides the built code: the passes run, the schedule, the TIR options
        (only when set, so older keys stay valid) and, for a tuned build, the tuning
        records' content (a re-tuned database is another build); bounds checks only when on."""
        data = {"passes": self.passes(), "schedule": self.schedule}
        if self.tir_options:
            data["tir"] = dict(self.tir_options)
        if self.bounds_check:
            data["bounds_check"] = True
        if self.schedule == "tuned":
            data["tuning"] = database_digest(self.tuning_db)
        return json.dumps(data, sort_keys=True)

    def label(self) -> str:
        extra = [f"-{p}" for p in self.disabled_pass] + [f"+{p}" for p in self.required_pass]
        if self.fast_math is not None:
            extra.append("fastmath" if self.fast_math else "nofastmath")
        if self.schedule != DEFAULT_SCHEDULE:
            extra.append(f"schedule={self.schedule}")
        extra += [name if value is True else f"{name}={json.dumps(value)}" for name, value in self.tir_options]
        if self.bounds_check:
            extra.append("bounds_check")
        return f"O{self.opt_level}" + ("," + ",".join(extra) if extra else "")


def _as_dict(settings) -> dict:
    """TIR option settings given as a dict or as [name, value] pairs (a mutant's form)."""
    if isinstance(settings, dict):
        return dict(settings)
    try:
        return {name: value for name, value in settings}
    except (TypeError, ValueError):
        raise InputError(f"tir_options: expected a table or [name, value] pairs, got {settings!r}") from None


def database_digest(db_dir: str) -> str:
    """A short digest of a tuning database's record files ('' when there is none)."""
    folder = Path(db_dir) if db_dir else None
    if folder is None or not folder.is_dir():
        return ""
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.json")))
    return _digest(str(folder), stamp)


@functools.lru_cache(maxsize=16)
def _digest(folder: str, stamp: tuple) -> str:
    """Cached by the files' names, sizes and times: plans ask for the key of every build."""
    import hashlib

    digest = hashlib.blake2b(digest_size=8)
    for name, _size, _mtime in stamp:
        digest.update(name.encode())
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()


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


@dataclass(frozen=True)
class Target:
    """A named deployment target: a TVM target dict plus where its code runs."""

    name: str
    spec: dict = field(hash=False)
    device: str  # cpu, cuda or rpc
    rpc_host: str = ""  # the RPC server's address, or the tracker's when rpc_key is set
    rpc_port: int = 0
    rpc_key: str = ""  # the tracker's device key; "" for a direct server

    @property
    def rpc_address(self) -> str:
        """The remote end as the user wrote it (for error lines)."""
        if self.rpc_key:
            return f"rpc-tracker://{self.rpc_host}:{self.rpc_port}/{self.rpc_key}"
        return f"rpc://{self.rpc_host}:{self.rpc_port}"

    def tvm_target(self):
        import tvm

        if self.spec["kind"] == "cuda":
            return tvm.target.Target(self.spec, host={"kind": "llvm"})
        return tvm.target.Target(self.spec)

    def key(self) -> str:
        return json.dumps(self.spec, sort_keys=True)


@functools.lru_cache(maxsize=1)
def host_cpu_name() -> str:
    import tvm

    return tvm.target.codegen.llvm_get_system_cpu()


@functools.lru_cache(maxsize=1)
def host_cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def known_target_names() -> list[str]:
    return list(CPU_TARGETS) + ["cuda", "rpc://HOST:PORT[/TARGET]", TRACKER_SYNTAX]


def parse_target(name: str) -> Target:
    """A target by name: cpu, cpu-generic, cpu-avx2, cpu-avx512, cuda, rpc://HOST:PORT[/TARGET],
    rpc-tracker://HOST:PORT/KEY[/TARGET]."""
    if name in CPU_TARGETS:
        mcpu = CPU_TARGETS[name] or host_cpu_name()
        return Target(name, {"kind": "llvm", "mcpu": mcpu}, "cpu")
    if name == "cuda":
        return Target(name, {"kind": "cuda", "arch": cuda_arch()}, "cuda")
    match = RPC_PATTERN.match(name) or TRACKER_PATTERN.match(name)
    if match:
        return _remote_target(name, match)
    if name.startswith("rpc:"):
        raise TargetError(f"bad RPC address {name!r}: expected rpc://HOST:PORT or rpc://HOST:PORT/TARGET")
    if name.startswith("rpc-tracker:"):
        raise TargetError(f"bad RPC tracker address {name!r}: expected {TRACKER_SYNTAX} "
                          "(KEY: the device key its servers registered with)")
    raise TargetError(f"unknown target {name!r} (known: {', '.join(known_target_names())})")


def _remote_target(name: str, match: re.Match) -> Target:
    """An RPC target (direct or through a tracker): one of the named CPU targets' code,
    run on the remote end; only the address and the key differ between the two forms."""
    port = int(match["port"])
    if not 0 < port < 65536:
        raise TargetError(f"RPC address {name!r}: port must be 1..65535")
    remote = match["target"] or "cpu-generic"
    if remote not in CPU_TARGETS or remote == "cpu":
        raise TargetError(f"RPC address {name!r}: remote target must be one of cpu-generic, cpu-avx2, cpu-avx512")
    key = match.groupdict().get("key") or ""
    return Target(name, parse_target(remote).spec, "rpc", match["host"], port, key)


def cuda_arch() -> str:
    """The local GPU's architecture, or sm_80 when there is none (build only)."""
    import tvm

    dev = tvm.cuda(0)
    if dev.exist:
        major, minor = dev.compute_version.split(".")
        return f"sm_{major}{minor}"
    return "sm_80"


def check_runnable(target: Target) -> None:
    """Refuse to run code the local machine cannot execute, with one clear line."""
    if target.device == "cuda":
        import tvm

        if not tvm.cuda(0).exist:
            raise TargetError("target 'cuda': this machine has no CUDA GPU to run it on (building for it works)")
    missing = [f for f in CPU_FEATURES.get(target.name, ()) if f not in host_cpu_flags()]
    if missing and host_cpu_flags():
        raise TargetError(f"target {target.name!r} needs CPU features this machine lacks: {', '.join(missing)}")


def schedule_passes(target: Target, options: BuildOptions, stats: BuildStats) -> list:
    """The passes that give the fused PrimFuncs their loop schedule (after FuseTIR, so a
    TIR mutant is mutated first and scheduled after, like the original)."""
    if target.spec["kind"] == "cuda":
        from tvm.s_tir import dlight as dl

        return [dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                        dl.gpu.GeneralReduction(), dl.gpu.Fallback())]
    if options.schedule == "none":
        return []
    from . import schedules

    passes = []
    if options.schedule == "tuned":
        from . import tuning

        passes.append(tuning.apply_database_pass(options.tuning_db, target.spec, _TunedInto(stats)))
    passes.append(schedules.default_schedule_pass(target.spec, stats=stats.kernels))
    return passes


class _TunedInto:
    """Adapter: the tuned-records pass merges its hits and misses into a `BuildStats`."""

    def __init__(self, stats: BuildStats):
        self.stats = stats

    def merge(self, run) -> None:
        self.stats.tuned_hits += run.hits
        self.stats.tuned_misses += run.misses


def relax_pipeline(target: Target, options: BuildOptions, stats: BuildStats | None = None):
    """The Relax pass sequence for ``options``; every optional pass is listed explicitly."""
    import tvm
    from tvm import relax

    stats = stats if stats is not None else BuildStats(options.schedule)
    passes = [relax.backend.DispatchSampling(), relax.backend.DispatchSortScan()]
    # The table's passes this build runs, in pipeline order: what runs is exactly
    # options.passes() (PassContext(disabled_pass=...) says the same for OPTIONAL_PASSES;
    # it cannot for every pass: DecomposeOpsForInference calls itself "DecomposeOps").
    runs = set(options.passes())
    passes += [spec.create() for spec in PIPELINE if not spec.optional or spec.name in runs]
    if options.bounds_check:  # on the fused (possibly mutated) PrimFuncs, before scheduling and flattening
        from .bounds import bounds_check_pass

        passes.append(bounds_check_pass())
    passes += schedule_passes(target, options, stats)
    if options.bounds_check:  # checked loops stay serial: TVM loses a failed check in a parallel loop
        from .bounds import serial_checks_pass

        passes.append(serial_checks_pass())
    passes += [
        relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(),
        relax.transform.RemovePurityChecking(), relax.transform.CallTIRRewrite(),
        relax.transform.StaticPlanBlockMemory(), relax.transform.LowerAllocTensor(),
        relax.transform.KillAfterLastUse(), relax.transform.LowerRuntimeBuiltin(),
        relax.transform.ComputePrimValue(), relax.transform.VMShapeLower(),
        relax.transform.AttachGlobalSymbol(),
    ]
    tvm_target = target.tvm_target()

    @tvm.transform.module_pass(opt_level=0, name="MutateNNPipeline")
    def _pipeline(mod, _ctx):
        with tvm_target:
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def pass_context(options: BuildOptions, instruments=()):
    """The context every build of ``options`` runs in: the opt-level passes it does not
    run are disabled by name, and the TIR options go to the TIR pipeline as config."""
    import tvm

    skipped = [p for p in OPTIONAL_PASSES if p not in options.passes()]
    return tvm.transform.PassContext(opt_level=3, disabled_pass=skipped, instruments=list(instruments),
                                     config=tir_config(options.tir_options))


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
