"""A stack's compression applied to what each runner runs, in one order: prune, then
quantize or lower the precision. Each step that fails raises one `CompressionError`
naming its technique (a variant's row, or a (mutant, stack) pair's build_error)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import CompressionError, InputError
from . import calibration_rows, stage_error


def calibration_images(options, images: np.ndarray | None) -> np.ndarray:
    if images is None or len(images) == 0:
        raise CompressionError("compress (quantize int8-static) failed: no calibration images were given")
    return images[calibration_rows(len(images), options.calibration)]


def step(technique: str, func: Callable, *args):
    try:
        return func(*args)
    except (InputError, CompressionError):
        raise
    except Exception as err:  # a quantiser or converter fails in many ways; the user needs the first line
        raise stage_error(technique, err) from None


def compress_relax(mod, options, images: np.ndarray | None, build: Callable):
    """A Relax module (the program or a mutant) compressed as ``options`` say; ``build``
    compiles a module to a callable ``main`` (for calibration)."""
    from .precision import relax_fp16
    from .pruning import prune_relax
    from .quantize import relax_int8_static

    if options.prune:
        mod = step(f"prune {options.prune[1]} {options.prune[0]:g}", prune_relax, mod, *options.prune)
    if options.quantize == "int8-static":
        mod = step("quantize int8-static", relax_int8_static, mod, calibration_images(options, images), build)
    if options.precision == "fp16":
        mod = step("precision fp16", relax_fp16, mod, options.keep_fp32)
    return mod


def compress_onnx(model, options, input_name: str, images: np.ndarray | None):
    """An ONNX model compressed as ``options`` say."""
    from .precision import onnx_fp16
    from .pruning import prune_onnx
    from .quantize import onnx_quantize

    if options.prune:
        model = step(f"prune {options.prune[1]} {options.prune[0]:g}", prune_onnx, model, *options.prune)
    if options.quantize != "none":
        calib = calibration_images(options, images) if options.quantize == "int8-static" else None
        model = step(f"quantize {options.quantize}", onnx_quantize, model, options.quantize, input_name, calib)
    if options.precision == "fp16":
        model = step("precision fp16", onnx_fp16, model)
    return model


def compress_torch(module, options):
    """A torch module compressed as ``options`` say (a copy; the loaded model is untouched)."""
    from .precision import torch_cast
    from .pruning import prune_torch

    if options.prune:
        module = step(f"prune {options.prune[1]} {options.prune[0]:g}", prune_torch, module, *options.prune)
    if options.precision != "fp32":
        module = step(f"precision {options.precision}", torch_cast, module, options.precision)
    return module
