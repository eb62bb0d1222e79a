"""ONNX Runtime's CPU execution provider on an ONNX model: an ONNX file as it is, or a
model converted along an ONNX path (``onnxruntime(via=torch.onnx)``, ``(via=tf2onnx)``),
optionally compressed first (``precision=fp16``, ``quantize=int8-static``, ``prune=0.5``)."""
from __future__ import annotations

from .base import Runner


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    syntax = "onnxruntime[(via=onnx|torch.onnx|tf2onnx, precision=.., quantize=.., prune=..)]"
    forms = ("onnx",)

    def prepare_impl(self) -> None:
        import onnxruntime as ort

        from ..compression import compression_label, is_compressed
        from ..compression.apply import compress_onnx
        from ..compression.pruning import onnx_stats
        from ..errors import CompressionError, first_line

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
        form = self.program.form
        compressed = is_compressed(self.variant.options)
        model = form.payload if form.via != "onnx" or compressed else None
        if compressed:
            model = compress_onnx(form.payload, self.variant.options, form.input.name, self.images)
        data = model.SerializeToString() if model is not None else None
        try:
            self.session = ort.InferenceSession(data if data is not None else self.program.source.path, options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # a compressed model ORT has no kernel for (ConvInteger, ...)
            if not compressed:
                raise
            what = compression_label(self.variant.options)
            raise CompressionError(f"load (ONNX Runtime, {what} model) failed: {first_line(err, 300)}") from None
        self.input_name = form.input.name
        self._size = len(data) if data is not None else len(form.payload.SerializeToString())
        self._stats = onnx_stats(model if model is not None else form.payload)

    def artifact(self) -> dict:
        return {"size_bytes": self._size, "parameters": self._stats.parameters, "nonzeros": self._stats.nonzeros}

    def open_impl(self):
        return lambda x: self.session.run(None, {self.input_name: x})[0]


def export_torch_to_onnx(model, input_shape: tuple[int, ...], path):
    """Export a PyTorch model to an ONNX file (for scripts that export by hand)."""
    import onnx

    from ..frameworks.pytorch import source_from_module, to_onnx

    form = to_onnx(source_from_module(model, tuple(input_shape), "model", "module:model"))
    onnx.save(form.payload, str(path))
    return path
