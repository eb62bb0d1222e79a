"""Keras eager (or a SavedModel's serving function) on the CPU: the framework's own answer
for a TensorFlow model. TensorFlow is imported only in the worker that runs it."""
from __future__ import annotations

from .base import Runner


class KerasRunner(Runner):
    name = "keras"
    frameworks = ("keras", "savedmodel")

    def open_impl(self):
        from ..frameworks.tensorflow import keras_call

        return keras_call(self.program.source)
