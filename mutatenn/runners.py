"""Running a program over a batch of images: TVM (local CPU, CUDA, RPC), PyTorch eager, ONNX Runtime.

Every runner returns `RunOutput`: logits (N, classes) and per-image latency in seconds,
measured after a warm-up, one image per call.
"""
from __future__ import annotations

import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .build import Target, check_runnable
from .errors import UserError

WARMUP_CALLS = 2


@dataclass
class RunOutput:
    logits: np.ndarray  # (N, classes) float32
    latencies: np.ndarray  # (N,) seconds

    @property
    def latency_ms_median(self) -> float:
        return float(np.median(self.latencies) * 1e3)


def _timed_loop(call, batch: np.ndarray) -> RunOutput:
    """Call ``call`` on each image (kept as a 1-image batch); time each call."""
    if len(batch) == 0:
        raise UserError("no images to run")
    for _ in range(WARMUP_CALLS):
        call(batch[:1])
    outs, lat = [], np.empty(len(batch))
    for i in range(len(batch)):
        start = time.perf_counter()
        out = call(batch[i : i + 1])
        lat[i] = time.perf_counter() - start
        outs.append(np.asarray(out, dtype=np.float32).reshape(1, -1))
    return RunOutput(np.concatenate(outs, axis=0), lat)


def run_tvm(executable, target: Target, batch: np.ndarray) -> RunOutput:
    """Run a built executable over the batch on the target's device (local or remote)."""
    import tvm
    from tvm import relax

    if target.device == "rpc":
        return _run_rpc(executable, target, batch)
    check_runnable(target)
    dev = tvm.cuda(0) if target.device == "cuda" else tvm.cpu(0)
    vm = relax.VirtualMachine(executable, dev)
    main = vm["main"]

    def call(x):
        return main(tvm.runtime.tensor(x, device=dev)).numpy()

    return _timed_loop(call, batch)


def check_rpc_reachable(host: str, port: int, timeout: float = 3.0) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise UserError(f"RPC server rpc://{host}:{port} is not reachable: {err.strerror or err}") from None


def _run_rpc(executable, target: Target, batch: np.ndarray) -> RunOutput:
    import tvm
    from tvm import relax, rpc

    check_rpc_reachable(target.rpc_host, target.rpc_port)
    try:
        remote = rpc.connect(target.rpc_host, target.rpc_port, session_timeout=600)
    except Exception as err:
        raise UserError(f"cannot open an RPC session with rpc://{target.rpc_host}:{target.rpc_port}: "
                        f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from None
    with tempfile.TemporaryDirectory(prefix="mutatenn-rpc-") as tmp:
        lib_path = Path(tmp) / "program.so"
        executable.export_library(str(lib_path))
        remote.upload(str(lib_path))
        lib = remote.load_module(lib_path.name)
    dev = remote.cpu(0)
    vm = relax.VirtualMachine(lib, dev)
    main = vm["main"]

    def call(x):
        return main(tvm.runtime.tensor(x, device=dev)).numpy()

    return _timed_loop(call, batch)


def run_torch(model, batch: np.ndarray) -> RunOutput:
    """PyTorch eager on the CPU, no autograd."""
    import torch

    model = model.eval()

    def call(x):
        with torch.no_grad():
            out = model(torch.from_numpy(x))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.numpy()

    return _timed_loop(call, batch)


def run_onnxruntime(model_path: Path, batch: np.ndarray, input_name: str | None = None) -> RunOutput:
    """ONNX Runtime's CPU execution provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = input_name or session.get_inputs()[0].name

    def call(x):
        return session.run(None, {name: x})[0]

    return _timed_loop(call, batch)


def export_torch_to_onnx(model, input_shape: tuple[int, ...], path: Path) -> Path:
    """Export a PyTorch model to ONNX so ONNX Runtime can serve as a reference."""
    import torch

    example = torch.zeros(input_shape, dtype=torch.float32)
    try:
        onnx_program = torch.onnx.export(model.eval(), (example,), dynamo=True, verbose=False)
        onnx_program.save(str(path))
    except Exception as err:
        raise UserError(f"cannot export the PyTorch model to ONNX for onnxruntime: {str(err).splitlines()[0]}") from None
    return path
