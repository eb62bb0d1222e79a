"""Deployment targets, build options and explicit Relax pipelines per optimisation level.

TVM 0.27's plain ``tvm.compile`` runs no fusion; MutateNN never relies on its default
pipeline. Each opt level is an explicit pass list (the one pass table is `mutators.passes.PIPELINE`), run
inside a ``PassContext`` so ``disabled_pass`` / ``required_pass`` are honoured.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from mutators.passes import OPT_LEVEL_PASSES, OPTIONAL_PASSES, PIPELINE

from .errors import InputError, TargetError

__all__ = ["OPT_LEVEL_PASSES", "OPTIONAL_PASSES", "BuildOptions", "Target", "parse_target", "build_artifact"]
DEFAULT_OPT_LEVEL = 2
CPU_TARGETS = {
    "cpu": None,  # the host CPU, named explicitly (mcpu=native is ignored by this LLVM build)
    "cpu-generic": "x86-64",
    "cpu-avx2": "haswell",
    "cpu-avx512": "skylake-avx512",
}
CPU_FEATURES = {"cpu-avx2": ("avx2", "fma"), "cpu-avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq")}
RPC_PATTERN = re.compile(r"^rpc://(?P<host>[^:/\s]+):(?P<port>\d+)(?:/(?P<target>[\w-]+))?$")


@dataclass(frozen=True)
class BuildOptions:
    """How a program is built: opt level, passes switched off or forced, fast math."""

    opt_level: int = DEFAULT_OPT_LEVEL
    disabled_pass: tuple[str, ...] = ()
    required_pass: tuple[str, ...] = ()
    fast_math: bool | None = None  # None: as the opt level says (on at O3)

    def __post_init__(self):
        if self.opt_level not in OPT_LEVEL_PASSES:
            raise InputError(f"opt level must be 0..3, not {self.opt_level!r}")
        for name in self.disabled_pass + self.required_pass:
            if name not in OPTIONAL_PASSES:
                raise InputError(f"unknown pass {name!r} (known: {', '.join(OPTIONAL_PASSES)})")

    def with_overrides(self, overrides: dict) -> "BuildOptions":
        """These options changed by a pass mutant's overrides."""
        fields = {"opt_level": self.opt_level, "disabled_pass": self.disabled_pass,
                  "required_pass": self.required_pass, "fast_math": self.fast_math}
        for key, value in overrides.items():
            if key not in fields:
                raise InputError(f"unknown build option {key!r}")
            fields[key] = tuple(value) if isinstance(value, (list, tuple)) else value
        return BuildOptions(**fields)

    @property
    def uses_fast_math(self) -> bool:
        if self.fast_math is not None:
            return self.fast_math
        return self.opt_level >= 3 or "FastMathTransform" in self.required_pass

    def passes(self) -> tuple[str, ...]:
        """The optional passes this build runs, in pipeline order."""
        wanted = set(OPT_LEVEL_PASSES[self.opt_level]) | set(self.required_pass)
        wanted.discard("FastMathTransform")
        if self.uses_fast_math:
            wanted.add("FastMathTransform")
        wanted -= set(self.disabled_pass)
        return tuple(p for p in OPTIONAL_PASSES if p in wanted)

    def key(self) -> str:
        return json.dumps({"passes": self.passes()}, sort_keys=True)

    def label(self) -> str:
        extra = [f"-{p}" for p in self.disabled_pass] + [f"+{p}" for p in self.required_pass]
        if self.fast_math is not None:
            extra.append("fastmath" if self.fast_math else "nofastmath")
        return f"O{self.opt_level}" + ("," + ",".join(extra) if extra else "")


@dataclass(frozen=True)
class Target:
    """A named deployment target: a TVM target dict plus where its code runs."""

    name: str
    spec: dict = field(hash=False)
    device: str  # cpu, cuda or rpc
    rpc_host: str = ""
    rpc_port: int = 0

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
    return list(CPU_TARGETS) + ["cuda", "rpc://HOST:PORT[/TARGET]"]


def parse_target(name: str) -> Target:
    """A target by name: cpu, cpu-generic, cpu-avx2, cpu-avx512, cuda, rpc://HOST:PORT[/TARGET]."""
    if name in CPU_TARGETS:
        mcpu = CPU_TARGETS[name] or host_cpu_name()
        return Target(name, {"kind": "llvm", "mcpu": mcpu}, "cpu")
    if name == "cuda":
        return Target(name, {"kind": "cuda", "arch": cuda_arch()}, "cuda")
    match = RPC_PATTERN.match(name)
    if match:
        port = int(match["port"])
        if not 0 < port < 65536:
            raise TargetError(f"RPC address {name!r}: port must be 1..65535")
        remote = match["target"] or "cpu-generic"
        if remote not in CPU_TARGETS or remote == "cpu":
            raise TargetError(f"RPC address {name!r}: remote target must be one of cpu-generic, cpu-avx2, cpu-avx512")
        inner = parse_target(remote)
        return Target(name, inner.spec, "rpc", match["host"], port)
    if name.startswith("rpc:"):
        raise TargetError(f"bad RPC address {name!r}: expected rpc://HOST:PORT or rpc://HOST:PORT/TARGET")
    raise TargetError(f"unknown target {name!r} (known: {', '.join(known_target_names())})")


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
            raise TargetError("target 'cuda': built fine, but this machine has no CUDA GPU to run it on")
    missing = [f for f in CPU_FEATURES.get(target.name, ()) if f not in host_cpu_flags()]
    if missing and host_cpu_flags():
        raise TargetError(f"target {target.name!r} needs CPU features this machine lacks: {', '.join(missing)}")


def relax_pipeline(target: Target, options: BuildOptions):
    """The Relax pass sequence for ``options``; every optional pass is listed explicitly."""
    import tvm
    from tvm import relax

    passes = [relax.backend.DispatchSampling(), relax.backend.DispatchSortScan()]
    # Every pass of the table is listed; PassContext(disabled_pass=...) switches the
    # optional ones off, so what runs is exactly options.passes().
    passes += [getattr(relax.transform, spec.name)() for spec in PIPELINE]
    if target.spec["kind"] == "cuda":
        from tvm.s_tir import dlight as dl

        passes.append(dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                              dl.gpu.GeneralReduction(), dl.gpu.Fallback()))
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
    import tvm

    skipped = [p for p in OPTIONAL_PASSES if p not in options.passes()]
    return tvm.transform.PassContext(opt_level=3, disabled_pass=skipped, instruments=list(instruments))


def build_artifact(mod, target: Target, options: BuildOptions, instruments=()):
    """Compile a Relax module for a target; returns the TVM executable."""
    import tvm

    with pass_context(options, instruments):
        return tvm.compile(mod, target=target.tvm_target(), relax_pipeline=relax_pipeline(target, options))
