"""The environment that keeps TensorFlow quiet, in a module of its own: the CLI and the
worker pool set it before any process imports TensorFlow, without importing the loaders."""
from __future__ import annotations

import os

# Environment that keeps TensorFlow's start-up banners (absl's "log messages before
# InitializeLog", oneDNN's "custom operations are on", cpu_feature_guard) off stderr. It is
# read when TensorFlow is imported, so it is set before that, and workers inherit it.
# oneDNN's custom ops are off too: their results depend on the CPU's instruction set.
QUIET_TENSORFLOW = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def quiet_tensorflow():
    """TensorFlow's start-up logging off unless the user set these variables (must precede its import)."""
    for name, value in QUIET_TENSORFLOW.items():
        os.environ.setdefault(name, value)
