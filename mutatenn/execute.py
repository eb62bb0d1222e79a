"""Running one variant of a program over an image batch, in-process or in a worker process."""
from __future__ import annotations

import functools
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .build import build_artifact
from .errors import UserError
from .images import ImageSet, load_image_set, preprocess
from .loading import load_program
from .program import Program
from .runners import RunOutput, export_torch_to_onnx, run_onnxruntime, run_torch, run_tvm
from .variants import Variant, parse_variant


@dataclass
class VariantResult:
    variant: str
    output: RunOutput | None = None
    build_s: float = 0.0
    error: str = ""
    user_error: bool = False  # the failure is the user's input (exit 2), not a crash
    log: str = field(default="", repr=False)


def input_batch(program: Program, images: ImageSet) -> np.ndarray:
    """The image set preprocessed into the program's input layout, one row per image."""
    shape = program.input.shape
    return preprocess(images, program.preset, shape, program.input.layout)


def run_variant(program: Program, variant: Variant, batch: np.ndarray) -> VariantResult:
    """Build (if TVM) and run one variant; user errors propagate, nothing else is caught."""
    result = VariantResult(variant.text)
    if variant.kind == "tvm":
        start = time.perf_counter()
        executable = build_artifact(program.mod, variant.target, variant.options)
        result.build_s = time.perf_counter() - start
        result.output = run_tvm(executable, variant.target, batch)
    elif variant.kind == "torch":
        if program.framework != "torch" or program.native is None:
            raise UserError(f"variant 'torch' needs a PyTorch model; {program.spec!r} is a {program.framework} model")
        result.output = run_torch(program.native, batch)
    elif variant.kind == "onnxruntime":
        if program.framework == "onnx":
            result.output = run_onnxruntime(Path(program.spec), batch, program.input.name)
        elif program.framework == "torch" and program.native is not None:
            with tempfile.TemporaryDirectory(prefix="mutatenn-onnx-") as tmp:
                start = time.perf_counter()
                path = export_torch_to_onnx(program.native, program.input.shape, Path(tmp) / "model.onnx")
                result.build_s = time.perf_counter() - start
                result.output = run_onnxruntime(path, batch)
        else:
            raise UserError(f"variant 'onnxruntime' cannot run a {program.framework} model")
    return result


@functools.lru_cache(maxsize=4)
def cached_program(spec: str, pretrained: str, preset: str | None) -> Program:
    """Worker processes load each program once and reuse it for every job."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_program(spec, pretrained, preset)


@functools.lru_cache(maxsize=4)
def cached_images(spec: str) -> ImageSet:
    return load_image_set(spec)


def run_variant_job(model: str, pretrained: str, preset: str | None, images: str, variant_text: str) -> VariantResult:
    """Worker entry point: everything is rebuilt from plain strings (IRModules cannot be pickled)."""
    try:
        program = cached_program(model, pretrained, preset)
        batch = input_batch(program, cached_images(images))
        return run_variant(program, parse_variant(variant_text), batch)
    except UserError as err:
        return VariantResult(variant_text, error=str(err), user_error=True)
    except Exception as err:
        return VariantResult(variant_text, error=f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}",
                             log=traceback.format_exc()[-4000:])
