"""Localising where two variants of one program diverge, layer by layer (`mutatenn localize`).

Rooms: `layers` (a Relax program's bindings as typed layer records), `capture` (exposing
chosen layers as extra outputs, a few per build), `align` (pairing two programs' layers),
`divergence` (bisection to the first diverging layer, and the curve), `session` (opening
the two sides and choosing images), `reduce` (a minimal failing subgraph), `conversion`
(parameter, hyperparameter and preprocessing differences of a conversion, and repair),
`report` (terminal table, JSON/CSV, HTML).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .divergence import DEFAULT_PER_ROUND, DEFAULT_TOLERANCE
from .precision import DEFAULT_TARGET
from .session import DEFAULT_MAX_IMAGES, Localization, localize, open_mutant, open_variants

__all__ = ["DEFAULTS", "Localization", "localize", "localize_job", "open_mutant", "open_variants",
           "run_localization", "run_precision"]
DEFAULTS = {"tolerance": DEFAULT_TOLERANCE, "per_round": DEFAULT_PER_ROUND, "max_images": DEFAULT_MAX_IMAGES,
            "target_agreement": DEFAULT_TARGET}


def run_localization(*, run_dir=None, mutant=None, stack=None, model=None, a=None, b=None, images=None,
                     pretrained="auto", preset=None, image=None, tolerance=DEFAULT_TOLERANCE,
                     per_round=DEFAULT_PER_ROUND, max_images=DEFAULT_MAX_IMAGES, full_curve=True, reduce=False,
                     repair=False, passes=False, out_dir: Path | None = None, prepare: Callable[[], Path] | None = None,
                     trusted=False) -> Localization:
    """The whole command: open the two sides (every input checked), prepare the output
    folder, localise, then optionally repair and reduce, and write the results."""
    from ..outputs import prepare_out_dir
    from .report import write_results

    if run_dir is not None:
        pairing = open_mutant(Path(run_dir), mutant, stack, trusted)
    else:
        pairing = open_variants(model, a, b, images, pretrained, preset, image, trusted)
    if repair and pairing.same_program:
        from ..errors import InputError

        raise InputError("--repair analyses a conversion (two import paths or a model= file); "
                         f"{pairing.what} are one program")
    if reduce and not pairing.b.tap_type.reduces:
        from ..errors import InputError

        raise InputError(f"--reduce cuts B's program: B ({pairing.b.text}) must be a TVM or ONNX Runtime variant")
    if repair and not pairing.b.tap_type.repairs:
        from ..errors import InputError

        raise InputError(f"--repair changes B's program: B ({pairing.b.text}) must be a TVM or ONNX Runtime variant")
    bisection = None
    if passes:
        from .passes import around_guilty_step, bisect_pipeline, check_pipeline_pair

        check_pipeline_pair(pairing)
    out = prepare() if prepare is not None else prepare_out_dir(Path(out_dir))
    if passes:
        bisection = bisect_pipeline(pairing, tolerance)
        if bisection.guilty is not None:
            pairing = around_guilty_step(pairing, bisection)
    loc = localize(pairing, image, tolerance, per_round, max_images, full_curve)
    loc.passes = bisection
    if loc.diverges and repair:
        from .conversion import analyse_and_repair

        loc.fault_report = analyse_and_repair(loc)
    if loc.diverges and reduce:
        from .reduce import reduce_divergence

        loc.reduced = reduce_divergence(loc, out / "reduced")
    write_results(loc, out)
    return loc


def run_precision(*, model, a, b, images, pretrained="auto", preset=None, trusted=False, target=0.99,
                  per_round=DEFAULT_PER_ROUND, max_images=DEFAULT_MAX_IMAGES, tolerance=DEFAULT_TOLERANCE,
                  prepare: Callable[[], Path]):
    """``--precision``: the float16 variant B's layers to keep in float32 (`precision`);
    writes ``precision.json``."""
    from ..outputs import write_json
    from .precision import PRECISION_JSON, open_precision, repair_precision

    pairing = open_precision(model, a, b, images, pretrained, preset, trusted)
    out = prepare()
    result = repair_precision(pairing, target, per_round, max_images, tolerance)
    write_json(out / PRECISION_JSON, result.summary())
    return result


def _preprocessing(loc) -> str:
    """The first line of the command's output: each side's preprocessing (one line when equal)."""
    from ..loading import preprocessing_text

    def text(program):
        return preprocessing_text(program.source) if program.source is not None else program.preset

    a, b = text(loc.pairing.a.program), text(loc.pairing.b.program)
    return f"preprocessing: {a}" if a == b else f"preprocessing: A {a}; B {b}"


def _precision_kwargs(kwargs: dict) -> dict:
    keys = ("model", "a", "b", "images", "pretrained", "preset", "trusted", "per_round", "max_images", "tolerance")
    return {"target": kwargs["target_agreement"], **{k: kwargs[k] for k in keys}}


def localize_job(kwargs: dict, out: str) -> dict:
    """Worker entry point of the command: a mutant's build may read outside its buffers and
    crash, which must end this job, not the command. Returns the printed text, or the
    user's error line."""
    import warnings

    from ..errors import InputError
    from ..outputs import prepare_out_dir
    from .report import format_localization

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if kwargs.get("precision"):
                result = run_precision(**_precision_kwargs(kwargs), prepare=lambda: prepare_out_dir(Path(out)))
            else:
                search = {k: v for k, v in kwargs.items() if k not in ("precision", "target_agreement")}
                loc = run_localization(**search, prepare=lambda: prepare_out_dir(Path(out)))
        except InputError as err:
            return {"status": "input_error", "reason": str(err), "code": err.exit_code}
    # MutateNN's own warnings (untrained weights); framework and worker-pool chatter is not the user's.
    said = dict.fromkeys(str(w.message) for w in caught if "mutatenn" in w.filename)
    if kwargs.get("precision"):
        return {"status": "done", "text": result.format(), "warnings": list(said), "files": ["precision.json"]}
    parts = [_preprocessing(loc)] + ([loc.passes.format()] if loc.passes is not None else []) + [format_localization(loc)]
    if loc.fault_report is not None:
        parts.append(loc.fault_report.format())
    if loc.reduced is not None:
        parts.append(loc.reduced.text)
    return {"status": "done", "text": "\n\n".join(parts), "warnings": list(said)}
