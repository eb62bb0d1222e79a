"""TVM: build the Relax program for a target and run it on the Relax VM (local CPU,
CUDA, or a remote device over TVM RPC)."""
from __future__ import annotations

import re
import socket
import tempfile
from pathlib import Path

from ..build import (
    DEFAULT_OPT_LEVEL,
    BuildOptions,
    BuildStats,
    SharedBuild,
    build_artifact,
    build_with_kernels,
    check_runnable,
    parse_target,
)
from ..compression import is_compressed
from ..compression.apply import compress_relax
from ..errors import InputError, TargetError, first_line
from .base import Runner, Variant, make_variant, parse_options

_OPT_SUFFIX = re.compile(r"^(?P<target>[^()]+?)(?::O(?P<level>\d))?(?:\((?P<options>[^()]*)\))?$")


class TVMRunner(Runner):
    name = "tvm"
    syntax = "tvm:TARGET[:O<level>][(key=value, ...)]"
    builds = True
    forms = ("exported", "onnx", "tflite")

    def __init__(self, variant: Variant, program, mod=None):
        super().__init__(variant, program, mod)
        self.executable = None  # set by prepare(), or beforehand by `use_executable`
        self.build_stats = BuildStats(variant.options.schedule)
        self.base_kernels = None  # build.Kernels to link against (`share_kernels`)
        self.shared = SharedBuild()

    @classmethod
    def parse(cls, text: str, rest: str) -> Variant:
        """``TARGET[:O<level>][(key=value, ...)]``: the options are the schema's
        (`mutatenn.build.options.OPTIONS`), the same keys a campaign stack takes."""
        from ..build.options import OptionError

        match = _OPT_SUFFIX.match(rest)
        if not rest or not match:
            raise TargetError(f"variant {text!r}: expected {cls.syntax}")
        target = _variant_target(text, match["target"])
        fields, program = parse_options(text, f"({match['options'] or ''})", cls)
        if match["level"] is not None:
            if "opt_level" in fields:
                raise TargetError(f"variant {text!r}: give the opt level once (:O<level> or opt_level=)")
            fields["opt_level"] = int(match["level"])
        if fields.get("opt_level", DEFAULT_OPT_LEVEL) > 3:
            raise TargetError(f"variant {text!r}: opt level must be O0..O3")
        try:
            variant = make_variant(text, cls, fields, program, target)
            variant.options.check_target(target)
        except (OptionError, InputError) as err:
            raise TargetError(f"variant {text!r}: {err}") from None
        return variant

    @classmethod
    def preflight(cls, variant: Variant) -> None:
        target = variant.target
        if target.device == "rpc" and target.rpc_key:
            check_tracker_key(target.rpc_host, target.rpc_port, target.rpc_key)
        elif target.device == "rpc":
            check_rpc_reachable(target.rpc_host, target.rpc_port)
        else:  # a local CPU without the target's features, or no GPU: refused before any work
            check_runnable(target)

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

            options = options.with_overrides({"tuning_db": str(require_database(self.program.spec, self.variant.target,
                                                                           self.program.via))})
        self.build_stats, self.shared = BuildStats(options.schedule), SharedBuild()
        if is_compressed(options):  # after the mutant is made, before it is built
            self.mod = compress_relax(self.mod, options, self.images, calibration_build)
        if self.variant.target.spec["kind"] != "llvm":  # CUDA: TVM's own build, nothing shared
            self.executable = build_artifact(self.mod, self.variant.target, options, stats=self.build_stats)
            return
        self.executable, self.kernels = build_with_kernels(self.mod, self.variant.target, options,
                                                           self.base_kernels, self.build_stats, self.shared)

    def build_info(self) -> dict:
        """What the last build did (for the run folder's builds table)."""
        return {**self.build_stats.summary(), "kernels_compiled": len(self.shared.compiled),
                "kernels_reused": len(self.shared.reused)}

    def artifact(self) -> dict:
        """The exported library (kernels, VM bytecode and constants in one ``.so``)."""
        from ..compression.pruning import param_stats, relax_constants

        stats = param_stats(relax_constants(self.mod))
        with tempfile.TemporaryDirectory(prefix="mutatenn-size-") as tmp:
            path = Path(tmp) / "program.so"
            self.executable.export_library(str(path))
            return {"size_bytes": path.stat().st_size, "parameters": stats.parameters, "nonzeros": stats.nonzeros}

    def open_impl(self):
        import tvm
        from tvm import relax

        if self.threads and self.variant.target.device != "rpc":
            tvm.get_global_func("runtime.config_threadpool")(1, self.threads)

        target = self.variant.target
        if target.device == "rpc":
            lib, dev = _upload(self.executable, target)
        else:
            check_runnable(target)
            lib, dev = self.executable, (tvm.cuda(0) if target.device == "cuda" else tvm.cpu(0))
        main = relax.VirtualMachine(lib, dev)["main"]
        return lambda x: main(tvm.runtime.tensor(x, device=dev)).numpy()


def calibration_build(mod):
    """``main(x) -> [outputs]`` of ``mod`` built for this CPU with the default options: the
    calibration run of an int8-static quantisation (on the machine MutateNN runs on)."""
    import numpy as np
    import tvm
    from tvm import relax

    executable = build_artifact(mod, parse_target("cpu"), BuildOptions())
    main = relax.VirtualMachine(executable, tvm.cpu(0))["main"]

    def call(x: np.ndarray) -> list:
        out = main(tvm.runtime.tensor(x, device=tvm.cpu(0)))
        return [item.numpy() for item in out]

    return call


SHORT_SYNTAX = "tvm:TARGET[:O<level>][(options)]"


def _variant_target(text: str, name: str):
    """The variant's target; a wrong one names the variant syntax, and an opt level written
    without its O (``tvm:cpu:3``) is pointed out."""
    try:
        return parse_target(name)
    except TargetError as err:
        problem = str(err)
        base, _, level = name.rpartition(":")
        if level.isdigit() and base and _is_target(base):
            problem = f"the opt level is written O{level} ({text.replace(name, f'{base}:O{level}', 1)})"
        raise TargetError(f"variant {text!r}: {problem}; the syntax is {SHORT_SYNTAX}") from None


def _is_target(name: str) -> bool:
    try:
        parse_target(name)
    except TargetError:
        return False
    return True


def check_rpc_reachable(host: str, port: int, timeout: float = 3.0, what: str = "") -> None:
    """Something listens at ``host:port`` (``what`` names it in the error line)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        what = what or f"RPC server rpc://{host}:{port}"
        raise TargetError(f"{what} is not reachable: {err.strerror or err}") from None


def tracker_server_keys(host: str, port: int, timeout: float = 10.0) -> set[str]:
    """The device keys of the servers registered with the tracker (busy or free).

    The port is probed first: `rpc.connect_tracker` retries a refused connection for
    60 s. Its socket has no timeout of its own, so one is set: a port held by something
    other than a tracker must fail, not hang. Keys come from ``server_info``
    (``"server:KEY"``), not ``queue_info``: a request for an unknown key adds that key to
    ``queue_info`` (free 0, pending 1) too."""
    from tvm import rpc

    where = f"RPC tracker rpc-tracker://{host}:{port}"
    check_rpc_reachable(host, port, what=where)
    tracker = None
    try:
        tracker = rpc.connect_tracker(host, port)
        if getattr(tracker, "_sock", None) is not None:  # private in 0.27; skip if it goes
            tracker._sock.settimeout(timeout)
        servers = tracker.summary().get("server_info", [])
    except Exception as err:  # refused handshake, reset, timeout, bad reply: not a tracker
        raise TargetError(f"{where} does not answer as a TVM RPC tracker: {first_line(err)}") from None
    finally:
        if tracker is not None:
            tracker.close()
    return {s["key"].split(":", 1)[1] for s in servers if str(s.get("key", "")).startswith("server:")}


def check_tracker_key(host: str, port: int, key: str) -> None:
    """Refuse a key no server registered: the tracker would queue the request forever.
    A key whose servers are all busy is fine (the request waits its turn; a server that
    just ended a session also shows free 0 for about a second)."""
    keys = tracker_server_keys(host, port)
    if key not in keys:
        known = ", ".join(sorted(keys)) or "none"
        raise TargetError(f"RPC tracker rpc-tracker://{host}:{port} has no server with key {key!r} "
                          f"(keys it has: {known})")


def _session(target):
    """An RPC session with the target's remote end: the server itself, or a server of the
    key that the tracker hands out (checked again here: a worker may open it much later)."""
    from tvm import rpc

    host, port = target.rpc_host, target.rpc_port
    if target.rpc_key:
        check_tracker_key(host, port, target.rpc_key)
    else:
        check_rpc_reachable(host, port)
    try:
        if target.rpc_key:
            return rpc.connect_tracker(host, port).request(target.rpc_key, session_timeout=600)
        return rpc.connect(host, port, session_timeout=600)
    except Exception as err:  # any failure to open the session is the address's problem
        raise InputError(f"cannot open an RPC session with {target.rpc_address}: {first_line(err)}") from None


def _upload(executable, target):
    """Export the executable, upload it to the RPC server, load it there; (module, device)."""
    remote = _session(target)
    with tempfile.TemporaryDirectory(prefix="mutatenn-rpc-") as tmp:
        lib_path = Path(tmp) / "program.so"
        executable.export_library(str(lib_path))
        remote.upload(str(lib_path))
        lib = remote.load_module(lib_path.name)
    return lib, remote.cpu(0)
