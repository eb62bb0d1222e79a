"""The TFLite interpreter (LiteRT when installed) on the CPU: a .tflite file as it is, or a
TensorFlow model converted with the TFLite converter (``tflite(via=tflite)``, the default)."""
from __future__ import annotations

from .base import Runner


class TFLiteRunner(Runner):
    name = "tflite"
    syntax = "tflite[(via=tflite)]"
    forms = ("tflite",)

    def prepare_impl(self) -> None:
        from ..frameworks.tensorflow import tflite_call

        self.infer = tflite_call(self.program.form.payload)

    def open_impl(self):
        return self.infer
