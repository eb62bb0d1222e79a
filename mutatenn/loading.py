"""Loading models of every supported kind: a model reference becomes a `Source` (the model
as its framework holds it), and a `Program` (Relax IRModule + input spec) along one
import path (`mutatenn.frameworks.PATHS`).

Model references are the formats of `mutatenn.models.formats.FORMATS` (tried in order),
or an ``nn.Module`` through `program_from_torch`. A model file passes its format's safety
check (`mutatenn.models.safety`) before its loader sees it, unless the user trusts it.
Framework imports stay inside the loaders: importing TensorFlow before torchvision in one
process segfaults, so each framework is imported only by the path that needs it.
"""
from __future__ import annotations

import functools
import warnings
from importlib import import_module
from pathlib import Path

from .errors import ModelError
from .frameworks import Source, UntrainedWeightsWarning, convert, import_form, resolve_via, untrained  # noqa: F401
from .frameworks.pytorch import SEED, TORCHVISION_MODELS, source_from_module, torchvision_weights_file
from .frameworks.relax_import import output_classes
from .frameworks.tensorflow import KERAS_MODELS
from .models.formats import find_format, model_format
from .models.safety import check_model
from .program import Program

__all__ = ["preprocessing_text", "PRETRAINED_CHOICES", "TORCHVISION_MODELS", "KERAS_MODELS", "SEED", "UntrainedWeightsWarning",
           "load_source", "load_program", "program_from_torch", "program_from_source", "torchvision_weights_file"]
PRETRAINED_CHOICES = ("auto", "require", "never")


def load_source(spec: str, pretrained: str = "auto", preset: str | None = None, trusted: bool = False) -> Source:
    """The model named by ``spec`` as its framework holds it. Never downloads anything; a
    file its format's safety check refuses never reaches the loader unless ``trusted``."""
    if pretrained not in PRETRAINED_CHOICES:
        raise ModelError(f"--pretrained must be one of {', '.join(PRETRAINED_CHOICES)}, not {pretrained!r}")
    fmt = model_format(spec)
    if fmt.is_file:
        _check_path(Path(spec), bool(fmt.folder_file))
    check_model(spec, trusted)
    module, _, func = fmt.loader.partition(":")
    source = getattr(import_module(module), func)(spec, pretrained, trusted)
    if preset:
        from .images import PRESETS

        if preset not in PRESETS:
            raise ModelError(f"unknown preprocessing preset {preset!r} (known: {', '.join(PRESETS)})")
        source.preset = preset
    else:
        _fit_default_preset(source)
    return source


def _fit_default_preset(source: Source) -> None:
    """A model file's default preset (imagenet) that does not fit its input (an 8x8x1
    digit model) becomes ``raw``, a resize to the input's size, and a note says so; a
    preset the user named is kept as named."""
    from .images import FALLBACK_PRESET, preset_misfit

    if len(source.input.shape) != 4:
        return
    misfit = preset_misfit(source.preset, source.input.shape, source.input.layout)
    if misfit:
        source.preset_note = f"chosen, not {source.preset}: {misfit}; --preset or [model] preset chooses"
        source.preset = FALLBACK_PRESET


def preprocessing_text(source: Source) -> str:
    """What every command prints first and every report's overview shows: the preset, what
    it does, the input it feeds, and why it was chosen when MutateNN chose it."""
    from .images import preprocessing_line

    line = preprocessing_line(source.preset, source.input.shape, source.input.layout)
    return f"{line} ({source.preset_note})" if source.preset_note else line


def source_framework(spec: str) -> str:
    """The framework of a model reference's models, known before loading it ("" when unknown)."""
    fmt = find_format(spec)
    return fmt.framework if fmt else ""


def source_family(spec: str) -> str:
    """The framework family a model reference's processes import ("" when unknown or not TensorFlow)."""
    fmt = find_format(spec)
    return fmt.family if fmt else ""


def check_model_isolated(spec: str, trusted: bool = False) -> None:
    """`check_model` for a coordinator that must stay free of TensorFlow (a check that
    imports it runs in a worker process): refuses an untrusted file before anything is
    written (a campaign's run folder)."""
    fmt = find_format(spec)
    if fmt is None or trusted or not fmt.check or not fmt.check_family:
        check_model(spec, trusted)
        return
    from .isolation import DONE, run_isolated

    outcome = next(run_isolated(_check_job, [(spec,)], family=fmt.check_family))
    if outcome.status != DONE:
        raise ModelError(f"check ({fmt.name}) failed for {spec!r}: the worker process {outcome.status}: "
                         f"{outcome.reason}")
    if outcome.value:
        raise outcome.value


def _check_job(spec: str):
    """Worker side of `check_model_isolated`: the refusal (an exception object) or None."""
    from .errors import InputError

    try:
        check_model(spec)
    except InputError as err:
        return err
    return None


def load_source_isolated(spec: str, pretrained: str = "auto", preset: str | None = None,
                         vias: tuple[str, ...] = (), trusted: bool = False) -> tuple[Source, dict[str, str]]:
    """`load_source` for a coordinator that must stay free of TensorFlow (it may import
    torchvision later): a TensorFlow model is loaded and converted along ``vias`` in a
    worker process, and comes back without its native object but with those forms, which
    TVM's ONNX and TFLite frontends import without TensorFlow. Returns (source, via -> why
    its conversion failed); other models load here, as `load_source` does."""
    if source_family(spec) != "tensorflow":
        return load_source(spec, pretrained, preset, trusted), {}
    from .isolation import DONE, run_isolated

    outcome = next(run_isolated(_source_job, [(spec, pretrained, preset, tuple(vias), trusted)], family="tensorflow"))
    if outcome.status != DONE:
        raise ModelError(f"load (TensorFlow) failed for {spec!r}: the worker process {outcome.status}: {outcome.reason}")
    error, source, failed = outcome.value
    if error:
        raise ModelError(error)
    for note in source.notes:
        if "pretrained weights not found" in note:
            warnings.warn(note, UntrainedWeightsWarning, stacklevel=2)
    return source, failed


def _source_job(spec: str, pretrained: str, preset: str | None, vias: tuple[str, ...], trusted: bool = False):
    """Worker side of `load_source_isolated`: (error line, picklable source, failed conversions)."""
    import dataclasses

    from .errors import InputError

    try:
        source = cached_source(spec, pretrained, preset, trusted)
    except InputError as err:
        return str(err), None, {}
    failed = {}
    for via in vias:
        try:
            convert(source, resolve_via(source.framework, via))
        except InputError as err:
            failed[via] = str(err)
    return "", dataclasses.replace(source, native=None, exported=None, forms=dict(source.forms)), failed


def load_program(spec: str, pretrained: str = "auto", preset: str | None = None, via: str = "",
                 relax: bool = True, trusted: bool = False) -> Program:
    """The model imported into Relax along ``via`` (empty: the framework's default path).
    ``relax=False`` converts but does not import (native runners need only the form)."""
    return program_from_source(load_source(spec, pretrained, preset, trusted), via, relax)


def program_from_source(source: Source, via: str = "", relax: bool = True) -> Program:
    """A source along one import path: converted, then (``relax``) imported into Relax.
    ``via=""`` with ``relax=False`` is the source as it is (for runners of the framework itself)."""
    if not via and not relax:
        return Program(name=source.name, spec=source.spec, mod=None, input=source.input, preset=source.preset,
                       labels=source.labels, framework=source.framework, native=source.native,
                       notes=list(source.notes), source=source)
    via = resolve_via(source.framework, via, who=f"model {source.spec!r}")
    form = convert(source, via)
    mod = import_form(form, source.spec, source.framework) if relax else None
    labels = source.labels
    classes = output_classes(mod) if mod is not None else 0
    if classes and classes != len(labels):
        labels = [str(i) for i in range(classes)]
    return Program(name=source.name, spec=source.spec, mod=mod, input=form.input, preset=source.preset,
                   labels=labels, framework=source.framework, native=source.native,
                   notes=list(source.notes) + form.notes, via=via, source=source, form=form)


def program_from_torch(model, input_shape: tuple[int, ...], name: str = "torch-model", spec: str = "",
                       preset: str = "imagenet", labels: list[str] | None = None) -> Program:
    """An ``nn.Module`` (evaluated in eval mode) exported with ``torch.export`` and imported."""
    source = source_from_module(model, input_shape, name, spec or f"module:{name}", preset, labels)
    return program_from_source(source)


def _check_path(path: Path, folder: bool) -> None:
    if not path.exists():
        raise ModelError(f"model {'folder' if folder else 'file'} {str(path)!r} does not exist")
    if not folder and not path.is_file():
        raise ModelError(f"model path {str(path)!r} is not a file")


# ---------------------------------------------------------------- caches of a worker process
@functools.lru_cache(maxsize=4)
def cached_source(spec: str, pretrained: str, preset: str | None, trusted: bool = False):
    """Worker processes load each model once, whatever paths its jobs take (an untrusted
    file passes its safety check first, as in the coordinator)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_source(spec, pretrained, preset, trusted)


@functools.lru_cache(maxsize=8)
def cached_program(spec: str, pretrained: str, preset: str | None, via: str = "", relax: bool = True,
                   trusted: bool = False) -> Program:
    """Worker processes convert and import each (model, import path) once and reuse it for
    every job; ``relax=False``: converted only (native runners)."""
    return program_from_source(cached_source(spec, pretrained, preset, trusted), via, relax)
