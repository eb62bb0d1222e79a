"""ONNX Runtime's CPU execution provider: an ONNX model as it is, or a torch model
exported with torch.onnx (dynamo) first."""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import InputError, first_line
from .base import Runner


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    @classmethod
    def check_program(cls, program) -> None:
        if program.framework == "onnx" or (program.framework == "torch" and program.native is not None):
            return
        raise InputError(f"variant 'onnxruntime' cannot run a {program.framework} model")

    def prepare_impl(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.program.framework == "onnx":
            path, name = Path(self.program.spec), self.program.input.name
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        else:
            with tempfile.TemporaryDirectory(prefix="mutatenn-onnx-") as tmp:
                path = export_torch_to_onnx(self.program.native, self.program.input.shape, Path(tmp) / "m.onnx")
                self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            name = None
        self.input_name = name or self.session.get_inputs()[0].name

    def open_impl(self):
        return lambda x: self.session.run(None, {self.input_name: x})[0]


def export_torch_to_onnx(model, input_shape: tuple[int, ...], path: Path) -> Path:
    """Export a PyTorch model to ONNX so ONNX Runtime can serve as a reference."""
    import torch

    example = torch.zeros(input_shape, dtype=torch.float32)
    try:
        onnx_program = torch.onnx.export(model.eval(), (example,), dynamo=True, verbose=False)
        onnx_program.save(str(path))
    except Exception as err:  # the exporter fails in many ways; the user needs one line
        raise InputError(f"cannot export the PyTorch model to ONNX for onnxruntime: {first_line(err)}") from None
    return path
