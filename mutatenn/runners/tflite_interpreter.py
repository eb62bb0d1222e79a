"""The TFLite interpreter (LiteRT when installed) on the CPU: a .tflite file as it is, or a
TensorFlow model converted with the TFLite converter (``tflite(via=tflite)``, the default),
optionally quantised by the converter (``tflite(quantize=int8-static)``: full integer,
calibrated on the run's images)."""
from __future__ import annotations

from .base import Runner


class TFLiteRunner(Runner):
    name = "tflite"
    syntax = "tflite[(via=tflite, quantize=int8-static|int8-dynamic, calibration=N)]"
    forms = ("tflite",)

    def prepare_impl(self) -> None:
        from ..frameworks.tensorflow import tflite_call

        data = self.program.form.payload
        mode = self.variant.options.quantize
        if mode != "none":
            from ..compression.apply import calibration_images, step
            from ..frameworks.tensorflow import tflite_quantized

            calib = calibration_images(self.variant.options, self.images) if mode == "int8-static" else None
            data = step(f"quantize {mode}", tflite_quantized, self.program.source, mode, calib)
        self._size = len(data)
        self.infer = tflite_call(data, self.threads)

    def artifact(self) -> dict:
        return {"size_bytes": self._size}

    def open_impl(self):
        return self.infer
