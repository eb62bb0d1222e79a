"""TVM: build the Relax program for a target and run it on the Relax VM (local CPU,
CUDA, or a remote device over TVM RPC)."""
from __future__ import annotations

import re
import socket
import tempfile
from pathlib import Path

from ..build import (
    DEFAULT_OPT_LEVEL,
    SCHEDULES,
    BuildOptions,
    BuildStats,
    SharedBuild,
    build_artifact,
    build_with_kernels,
    check_runnable,
    parse_target,
)
from ..errors import InputError, TargetError, first_line
from .base import Runner, Variant

_OPT_SUFFIX = re.compile(r"^(?P<target>[^()]+?)(?::O(?P<level>\d))?(?:\((?P<options>[^()]*)\))?$")
OPTION_KEYS = {"schedule": SCHEDULES}


class TVMRunner(Runner):
    name = "tvm"
    syntax = "tvm:TARGET[:O<level>][(schedule=none|default|tuned)]"
    builds = True

    def __init__(self, variant: Variant, program, mod=None):
        super().__init__(variant, program, mod)
        self.executable = None  # set by prepare(), or beforehand by `use_executable`
        self.build_stats = BuildStats(variant.options.schedule)
        self.base_kernels = None  # build.Kernels to link against (`share_kernels`)
        self.shared = SharedBuild()

    @classmethod
    def parse(cls, text: str, rest: str) -> Variant:
        match = _OPT_SUFFIX.match(rest)
        if not rest or not match:
            raise TargetError(f"variant {text!r}: expected {cls.syntax}")
        level = int(match["level"]) if match["level"] is not None else DEFAULT_OPT_LEVEL
        if level > 3:
            raise TargetError(f"variant {text!r}: opt level must be O0..O3")
        target = parse_target(match["target"])
        options = _variant_options(text, match["options"])
        if options.get("schedule") == "tuned" and target.spec["kind"] != "llvm":
            raise TargetError(f"variant {text!r}: tuned schedules are for CPU (LLVM) targets only")
        return Variant(text, cls.name, target, BuildOptions(opt_level=level, **options))

    @classmethod
    def preflight(cls, variant: Variant) -> None:
        if variant.target.device == "rpc":
            check_rpc_reachable(variant.target.rpc_host, variant.target.rpc_port)

    def use_executable(self, executable) -> None:
        """Run an executable built earlier (the build cache) instead of building."""
        self.executable = executable
        self._prepared = True

    def share_kernels(self, kernels) -> None:
        """Compile only the kernels ``kernels`` (an earlier build's) lacks; link the rest."""
        self.base_kernels = kernels

    def prepare_impl(self) -> None:
        options = self.variant.options
        if options.schedule == "tuned" and not options.tuning_db:
            from ..tuning import require_database

            options = options.with_overrides({"tuning_db": str(require_database(self.program.spec, self.variant.target))})
        self.build_stats, self.shared = BuildStats(options.schedule), SharedBuild()
        if self.variant.target.spec["kind"] != "llvm":  # CUDA: TVM's own build, nothing shared
            self.executable = build_artifact(self.mod, self.variant.target, options, stats=self.build_stats)
            return
        self.executable, self.kernels = build_with_kernels(self.mod, self.variant.target, options,
                                                           self.base_kernels, self.build_stats, self.shared)

    def build_info(self) -> dict:
        """What the last build did (for the run folder's builds table)."""
        return {**self.build_stats.summary(), "kernels_compiled": len(self.shared.compiled),
                "kernels_reused": len(self.shared.reused)}

    def open_impl(self):
        import tvm
        from tvm import relax

        target = self.variant.target
        if target.device == "rpc":
            lib, dev = _upload(self.executable, target)
        else:
            check_runnable(target)
            lib, dev = self.executable, (tvm.cuda(0) if target.device == "cuda" else tvm.cpu(0))
        main = relax.VirtualMachine(lib, dev)["main"]
        return lambda x: main(tvm.runtime.tensor(x, device=dev)).numpy()


def _variant_options(text: str, body: str | None) -> dict:
    """``(key=value, ...)`` after the target: checked against `OPTION_KEYS`."""
    options = {}
    for item in filter(None, (part.strip() for part in (body or "").split(","))):
        key, eq, value = (x.strip() for x in item.partition("="))
        if not eq or key not in OPTION_KEYS:
            raise TargetError(f"variant {text!r}: unknown option {item!r} (known: "
                              f"{', '.join(f'{k}={chr(124).join(v)}' for k, v in OPTION_KEYS.items())})")
        if value not in OPTION_KEYS[key]:
            raise TargetError(f"variant {text!r}: {key} must be one of {', '.join(OPTION_KEYS[key])}, not {value!r}")
        options[key] = value
    return options


def check_rpc_reachable(host: str, port: int, timeout: float = 3.0) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise TargetError(f"RPC server rpc://{host}:{port} is not reachable: {err.strerror or err}") from None


def _upload(executable, target):
    """Export the executable, upload it to the RPC server, load it there; (module, device)."""
    from tvm import rpc

    check_rpc_reachable(target.rpc_host, target.rpc_port)
    try:
        remote = rpc.connect(target.rpc_host, target.rpc_port, session_timeout=600)
    except Exception as err:  # any failure to open the session is the address's problem
        raise InputError(f"cannot open an RPC session with rpc://{target.rpc_host}:{target.rpc_port}: "
                         f"{first_line(err)}") from None
    with tempfile.TemporaryDirectory(prefix="mutatenn-rpc-") as tmp:
        lib_path = Path(tmp) / "program.so"
        executable.export_library(str(lib_path))
        remote.upload(str(lib_path))
        lib = remote.load_module(lib_path.name)
    return lib, remote.cpu(0)
