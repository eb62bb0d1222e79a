"""Running one variant of a program over an image batch, in-process or in a worker process."""
from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError, first_line
from .images import ImageSet, load_image_set, preprocess
from .loading import cached_program, cached_source  # noqa: F401 - the caches live with loading
from .program import Program
from .runners import RunOutput, Variant, make_runner, parse_variant, program_for, variant_program


@dataclass
class VariantResult:
    variant: str
    output: RunOutput | None = None
    build_s: float = 0.0
    error: str = ""
    user_error: bool = False  # the failure is the user's input (exit 2), not a crash
    log: str = field(default="", repr=False)
    artifact: dict = field(default_factory=dict)  # `Runner.artifact`: size_bytes, parameters, nonzeros


def input_batch(program: Program, images: ImageSet) -> np.ndarray:
    """The image set preprocessed into the program's input layout, one row per image."""
    return preprocess(images, program.preset, program.input.shape, program.input.layout)


def run_variant(program: Program, variant: Variant, batch: np.ndarray, runner_ref: str | None = None,
                mod=None, threads: int = 0) -> VariantResult:
    """Prepare and run one variant through its runner (``mod``: a mutant instead of the
    program's own module; ``threads``: the runtime's thread count, 0 its own choice); the
    batch is also the calibration set a quantisation draws from. Errors propagate."""
    runner = make_runner(variant, program_for(variant, program, runner_ref), mod=mod, ref=runner_ref)
    runner.use_images(batch)
    runner.use_threads(threads)
    build_s = runner.prepare()
    output = runner.run(batch)
    return VariantResult(variant.text, output, build_s, artifact=runner_artifact(runner))


def runner_artifact(runner) -> dict:
    """The runner's deployable size and parameter counts; {} when it cannot say (a remote
    build's library, an exporter without a compiler): a size is a figure, not a verdict."""
    try:
        return runner.artifact()
    except Exception:  # noqa: BLE001 - a missing figure leaves its column empty
        return {}


@functools.lru_cache(maxsize=4)
def cached_images(spec: str) -> ImageSet:
    return load_image_set(spec)


def kept_bindings_job(model: str, pretrained: str, preset: str | None, variant_texts: list[str],
                      trusted: bool = False) -> str:
    """Worker entry point: the first variant whose ``keep_fp32`` names a binding its imported
    program lacks, as one line ('' when every name is found)."""
    from .compression.precision import check_kept

    for text in variant_texts:
        variant = parse_variant(text)
        program = variant_program(variant, variant.model or model, pretrained, preset, None, trusted)
        try:
            check_kept(program.mod, variant.options.keep_fp32)
        except InputError as err:
            return f"variant {text!r}: {err}"
    return ""


def run_variant_job(model: str, pretrained: str, preset: str | None, images: str, variant_text: str,
                    runner_ref: str | None = None, trusted: bool = False, threads: int = 0) -> VariantResult:
    """Worker entry point: everything is rebuilt from plain strings (IRModules cannot be pickled)."""
    try:
        variant = parse_variant(variant_text, runner_ref)
        program = variant_program(variant, model, pretrained, preset, runner_ref, trusted)
        batch = input_batch(program, cached_images(images))
        return run_variant(program, variant, batch, runner_ref, threads=threads)
    except InputError as err:
        return VariantResult(variant_text, error=str(err), user_error=True)
    except Exception as err:  # a crash of this variant is its result, not the end of the comparison
        return VariantResult(variant_text, error=first_line(err), log=traceback.format_exc()[-4000:])
