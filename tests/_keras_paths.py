"""Runs small Keras models along every framework path in ONE process and prints, as JSON,
how each variant agrees with Keras itself: ``python tests/_keras_paths.py DIR NAME...``.

Run as a script (the test process never imports TensorFlow, which segfaults torchvision
imported after it). Each variant goes through MutateNN's own worker entry point
(`mutatenn.execute.run_variant_job`: parse, load, convert, import, build, run), in this
process, so TensorFlow is imported once and each model loaded once for all its paths.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

VARIANTS = ("tvm:cpu", "tvm:cpu(via=tf2onnx)", "tflite", "onnxruntime(via=tf2onnx)")  # tvm:cpu: no via, tflite
IMAGES = "digits:6"


def check(model: str) -> dict:
    import numpy as np

    from mutatenn.execute import run_variant_job

    reference = run_variant_job(model, "auto", None, IMAGES, "keras")
    if reference.error:
        return {"keras": {"error": reference.error}}
    base = reference.output.logits.reshape(len(reference.output.logits), -1)
    out = {}
    for variant in VARIANTS:
        result = run_variant_job(model, "auto", None, IMAGES, variant)
        if result.error:
            out[variant] = {"error": result.error}
            continue
        logits = result.output.logits.reshape(base.shape)
        out[variant] = {"top1_agreement": float(np.mean(logits.argmax(1) == base.argmax(1))),
                        "rel_l2": float(np.linalg.norm(logits - base) / np.linalg.norm(base))}
    return out


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    print(json.dumps({name: check(str(folder / f"{name}.keras")) for name in sys.argv[2:]}))
