"""ONNX Runtime's CPU execution provider on an ONNX model: an ONNX file as it is, or a
model converted along an ONNX path (``onnxruntime(via=torch.onnx)``, ``(via=tf2onnx)``)."""
from __future__ import annotations

from .base import Runner


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    syntax = "onnxruntime[(via=onnx|torch.onnx|tf2onnx)]"
    forms = ("onnx",)

    def prepare_impl(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        form = self.program.form
        model = form.payload.SerializeToString() if form.via != "onnx" else self.program.source.path
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = form.input.name

    def open_impl(self):
        return lambda x: self.session.run(None, {self.input_name: x})[0]


def export_torch_to_onnx(model, input_shape: tuple[int, ...], path):
    """Export a PyTorch model to an ONNX file (for scripts that export by hand)."""
    import onnx

    from ..frameworks.pytorch import source_from_module, to_onnx

    form = to_onnx(source_from_module(model, tuple(input_shape), "model", "module:model"))
    onnx.save(form.payload, str(path))
    return path
