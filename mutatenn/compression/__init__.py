"""Compression and precision of a deployment: what a stack does to a model before it runs.

Three techniques, one file each, each a set of functions per runtime:

- `precision` (``fp32`` / ``fp16`` / ``bf16``): TVM through Relax ``ToMixedPrecision``,
  ONNX Runtime through onnxconverter-common's float16 conversion, PyTorch eager cast;
- `quantize` (``int8-dynamic`` / ``int8-static``): ONNX Runtime's quantiser (QDQ format,
  calibrated), TFLite full-integer conversion, TVM by a calibrated quantize/dequantize
  rewrite of the Relax program (fake-quantised float math, as TVM runs a QDQ ONNX model);
- `pruning` (``prune = amount`` or ``{ amount, method }``): global magnitude or channel
  pruning of the parameters the runner runs (Relax constants, ONNX initialisers, torch
  parameters), so it works for every source and import path.

The options themselves are lines of the build-option schema (`mutatenn.build.options`).
Order, in `compare` and in a campaign: the mutant is made on the program, then the
stack's compression is applied (prune, then quantize or precision), then it is built.
Calibration images are a seeded choice of the run's own images (`calibration_rows`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CompressionError, InputError, first_line

PRECISIONS = ("fp32", "fp16", "bf16")
QUANTIZE = ("none", "int8-dynamic", "int8-static")
PRUNE_METHODS = ("magnitude", "channel")
DEFAULT_CALIBRATION = 16
__all__ = ["CompressionError", "PRECISIONS", "QUANTIZE", "PRUNE_METHODS", "ParamStats", "is_compressed",
           "compression_label", "calibration_rows", "cpu_has_bf16", "stage_error"]
SEED = 0  # calibration images and pruning ties are chosen with this seed: runs repeat


@dataclass(frozen=True)
class ParamStats:
    """Parameter counts of what a runner runs: every value, and the nonzero ones (the size a
    sparse format would need; masked zeros do not shrink a dense file)."""

    parameters: int = 0
    nonzeros: int = 0


def is_compressed(options) -> bool:
    """Whether a variant's build options compress or change precision."""
    return options.precision != "fp32" or options.quantize != "none" or bool(options.prune)


def compression_label(options) -> str:
    """``fp16``, ``int8-static``, ``prune=0.5:magnitude``, ``fp32``: the stack's compression in words."""
    parts = [options.precision] if options.precision != "fp32" else []
    if options.quantize != "none":
        parts.append(options.quantize)
    if options.prune:
        parts.append(f"prune={options.prune[0]:g}:{options.prune[1]}")
    if options.keep_fp32:
        parts.append(f"keep_fp32={len(options.keep_fp32)}")
    return "+".join(parts) or "fp32"


def combination_error(options) -> str | None:
    """Combinations no runtime gives: quantisation with a lower float precision; layers kept
    in float32 without a lower precision to keep them from."""
    if options.keep_fp32 and options.precision != "fp16":
        return (f"keep_fp32 keeps layers of a precision=fp16 build in float32; this one has "
                f"precision={options.precision}")
    if options.quantize != "none" and options.precision != "fp32":
        return (f"quantize={options.quantize} and precision={options.precision} cannot be combined "
                "(a quantised model computes in int8 and float32)")
    return None


def check_variant(variant) -> None:
    """What the schema's kinds cannot see: combinations, and bf16 on a CPU without it."""
    options = variant.options
    error = combination_error(options)
    if error:
        raise InputError(f"variant {variant.text!r}: {error}")
    check_bf16(options, f"variant {variant.text!r}")


def check_calibration(options, image_count: int, who: str) -> None:
    """More calibration images than the image set holds is the user's mistake: one line."""
    if options.quantize == "int8-static" and options.calibration > image_count:
        raise InputError(f"{who}: calibration = {options.calibration} images, but the image set holds "
                         f"{image_count}; give calibration <= {image_count}")


def calibration_rows(image_count: int, wanted: int, seed: int = SEED) -> np.ndarray:
    """A seeded, sorted choice of ``wanted`` image indices (all of them when fewer)."""
    if wanted >= image_count:
        return np.arange(image_count)
    return np.sort(np.random.default_rng(seed).choice(image_count, size=wanted, replace=False))


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX): elsewhere bf16 is
    emulated at a cost that says nothing about a deployment, so it is refused."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_bf16(options, who: str) -> None:
    """bf16 on a CPU without bf16 support: refused before any work starts."""
    if options.precision == "bf16" and not cpu_has_bf16():
        raise InputError(f"{who}: precision=bf16 needs a CPU with bfloat16 support (avx512_bf16 or amx_bf16); "
                         "this CPU has neither")


def stage_error(technique: str, err: BaseException) -> CompressionError:
    """``compress (quantize int8-static) failed: Type: line``: the one form of a compression failure."""
    return CompressionError(f"compress ({technique}) failed: {first_line(err, 300)}")
