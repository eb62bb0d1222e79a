"""Deployment targets by name: the local CPU variants, CUDA, and remote devices over TVM
RPC (a server, or any server of a device key through a tracker). Building, tuning and the
config all read targets here; nothing here builds."""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TargetError

__all__ = ["CPU_TARGETS", "CPU_FEATURES", "TRACKER_SYNTAX", "Target", "parse_target", "host_cpu_name",
           "host_cpu_flags", "known_target_names", "check_runnable", "cuda_arch"]

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


